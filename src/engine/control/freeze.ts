// A bounded pause of a served array for a snapshot (control ops `freeze` and `thaw`): freeze
// quiesces the array (MdArray.quiesce: I/O held and drained; for a clean copy also the bitmap
// flushed and the superblocks clean, for a crash-consistent one nothing written) and replies; the caller copies the member files and sends thaw from another connection. Writes
// wait meanwhile, so the pause is bounded: when thaw has not come within the freeze's timeout
// the engine resumes by itself, and the late thaw is refused with ETIMEDOUT, so the caller
// knows its copies may hold writes made after the freeze and throws them away.

import { TimeoutError } from '../../block/errors.js';
import { trace } from '../../common/trace.js';
import { MdError, type MdArray } from '../../md/index.js';
import type { EventSink } from '../events.js';
import type { FreezeConsistency } from './protocol.js';

/** The longest pause a freeze may ask for: I/O held longer than this would look like a hung device. */
export const MAX_FREEZE_MS = 30_000;

interface Frozen {
  resume: () => Promise<void>;
  since: number;
  timer: NodeJS.Timeout;
  timeoutMs: number;
}

export class Freezer {
  /** Set from the moment the array is quiesced until thaw or the timeout resumes it. */
  private frozen: Frozen | undefined;
  /** A freeze being set up (quiesce in progress): a second freeze is refused meanwhile. */
  private pending = false;
  /** The last freeze ended by its timeout, not by thaw: the next thaw reports it. */
  private expired: { timeoutMs: number } | undefined;

  constructor(
    private readonly array: MdArray,
    /** The engine's events: `frozen` and `thawed` say when writes were held and for how long. */
    private readonly events: EventSink = () => undefined,
  ) {}

  /** Quiesces the array; resolves once the member files are what `consistency` asks for. */
  async freeze(timeoutMs: number, consistency: FreezeConsistency = 'clean'): Promise<{ drainMs: number }> {
    if (this.frozen || this.pending) throw new MdError('EBUSY', `array ${this.array.name}: already frozen (one snapshot at a time)`);
    this.pending = true;
    this.expired = undefined;
    const started = performance.now();
    try {
      const { resume } = await this.array.quiesce(consistency);
      const quiesced = performance.now();
      const timer = setTimeout(() => {
        trace('engine', 'info', () => `freeze: no thaw within ${timeoutMs} ms: resuming I/O`);
        this.expired = { timeoutMs };
        void this.end(true);
      }, Math.max(0, timeoutMs - (quiesced - started)));
      // New writes wait from the start of the quiesce: the pause is counted from there.
      this.frozen = { resume, since: started, timer, timeoutMs };
      this.events({ type: 'frozen', drainMs: Math.round(quiesced - started), timeoutMs, consistency });
      return { drainMs: Math.round(quiesced - started) };
    } finally {
      this.pending = false;
    }
  }

  /** Resumes I/O; → how long new writes were held (from the start of the freeze to now). */
  async thaw(): Promise<{ pausedMs: number }> {
    if (this.expired) {
      const { timeoutMs } = this.expired;
      this.expired = undefined;
      throw new TimeoutError(`array ${this.array.name}: the freeze ended after its ${timeoutMs} ms timeout before thaw: writes went on meanwhile`);
    }
    if (!this.frozen) throw new MdError('EINVAL', `array ${this.array.name}: not frozen`);
    return { pausedMs: await this.end() };
  }

  /** Ends a freeze (thaw, timeout, stop); a stop goes on whether or not it was frozen. */
  async end(timedOut = false): Promise<number> {
    const f = this.frozen;
    if (!f) return 0;
    this.frozen = undefined;
    clearTimeout(f.timer);
    await f.resume();
    const pausedMs = Math.round(performance.now() - f.since);
    this.events({ type: 'thawed', pausedMs, timedOut });
    return pausedMs;
  }
}
