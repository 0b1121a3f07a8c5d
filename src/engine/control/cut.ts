// A snapshot's cut (control ops `cut`, `cut-status`, `cut-abort`): the instant of a snapshot of a
// served array, taken in the time of a drain instead of the time of a copy. Inside a freeze
// (freeze.ts: I/O held and drained, and for a clean copy the bitmap and superblocks written) a
// copy-before-write copy of every target member file starts (block/copy-before-write.ts), then
// I/O resumes: from that moment each copy holds its member as it was inside the freeze, however
// long the background copy takes and whatever the array writes meanwhile (data, bitmap pages,
// superblocks: every write to a member file goes through its FileDevice). The copies are made at
// `<to>.cutting`; when all are complete and durable each is renamed to `to` and its directory
// synced, so a name without `.cutting` is a finished copy, whoever looks and whether or not this
// engine still runs. A copy that fails (a clone refused: no space, an I/O error) gives the whole
// cut up and removes its files; the writes it was guarding never fail for it.
//
// One cut at a time. An engine that stops while a cut is being copied finishes the copy first
// (the member files stay open for it; a 4 GiB member is a few hundred ms of clones).

import { statSync } from 'node:fs';
import path from 'node:path';
import { CopyBeforeWrite } from '../../block/copy-before-write.js';
import { FileDevice, fileIdOf } from '../../block/file-device.js';
import { baseDevice } from '../../block/filter-device.js';
import { fsyncPath } from '../../block/fsync-path.js';
import { rename, rm } from '../../common/callback-fs.js';
import { describeError, trace } from '../../common/trace.js';
import { MdError, type MdArray } from '../../md/index.js';
import type { EventSink } from '../events.js';
import type { Freezer } from './freeze.js';
import type { CutStatus, CutTarget, FreezeConsistency } from './protocol.js';

/** The suffix of a copy still being made. */
export const CUTTING_SUFFIX = '.cutting';

interface Cut {
  id: string;
  state: CutStatus['state'];
  copies: CopyBeforeWrite[];
  /** The final names of the copies, by copy. */
  names: string[];
  started: number;
  pausedMs: number;
  error?: string;
  /** Settles when the copy is done or given up (never rejects). */
  finished: Promise<void>;
}

export class Cutter {
  private current: Cut | undefined;

  constructor(
    private readonly array: MdArray,
    private readonly freezer: Freezer,
    private readonly events: EventSink = () => undefined,
  ) {}

  /**
   * Makes cut `id` of the member files `targets` name: → how long draining took and how long new
   * writes were held. Rejects, having left no file behind, when a target is not a member file of
   * the array, a copy cannot start (a filesystem that cannot clone, a target that exists), or the
   * freeze ran out before every copy had started (writes went on before the instant was whole).
   */
  async cut(id: string, targets: readonly CutTarget[], timeoutMs: number, consistency: FreezeConsistency): Promise<{ drainMs: number; pausedMs: number }> {
    if (this.current?.state === 'copying') {
      throw new MdError('EBUSY', `array ${this.array.name}: snapshot ${this.current.id} is still being copied (one cut at a time)`);
    }
    const sources = targets.map((t) => ({ file: this.memberFile(t.member), to: t.to }));
    const { drainMs } = await this.freezer.freeze(timeoutMs, consistency);
    const copies: CopyBeforeWrite[] = [];
    let failed: unknown;
    try {
      for (const s of sources) copies.push(await CopyBeforeWrite.start(s.file.path, `${s.to}${CUTTING_SUFFIX}`));
    } catch (err) {
      failed = err;
    }
    let pausedMs: number;
    try {
      ({ pausedMs } = await this.freezer.thaw());
    } catch (err) {
      // The freeze ran out first: writes went on before every copy had started.
      failed ??= err;
      pausedMs = -1;
    }
    if (failed !== undefined) {
      await discard(copies, failed);
      throw failed;
    }
    const cut: Cut = { id, state: 'copying', copies, names: sources.map((s) => s.to), started: performance.now(), pausedMs, finished: Promise.resolve() };
    cut.finished = this.complete(cut);
    this.current = cut;
    this.events({ type: 'cut', id, pausedMs, members: copies.length });
    return { drainMs, pausedMs };
  }

  /** Cut `id`'s copy, or null when this engine has none of that id. */
  status(id: string): CutStatus | null {
    const c = this.current;
    if (c?.id !== id) return null;
    return {
      id,
      state: c.state,
      copiedBytes: c.copies.reduce((n, x) => n + x.copiedBytes, 0),
      totalBytes: c.copies.reduce((n, x) => n + x.size, 0),
      pausedMs: c.pausedMs,
      ...(c.error === undefined ? {} : { error: c.error }),
    };
  }

  /** Gives cut `id`'s copy up, if it is being copied; resolves once its files are removed. */
  async abort(id: string): Promise<void> {
    const c = this.current;
    if (c?.id !== id || c.state !== 'copying') return;
    for (const x of c.copies) x.abort(new MdError('EINVAL', `snapshot ${id}: given up (cut-abort)`));
    await c.finished;
  }

  /** Resolves when no cut is being copied (the engine's stop waits for it). */
  async settled(): Promise<void> {
    await this.current?.finished;
  }

  /** The FileDevice path of the array member that is the file `name` names (by identity, not by spelling). */
  private memberFile(name: string): FileDevice {
    let id: string;
    try {
      id = fileIdOf(statSync(name));
    } catch (err) {
      throw new MdError('EINVAL', `cut: ${name}: ${describeError(err)}`);
    }
    for (const m of this.array.memberList()) {
      const base = baseDevice(m.device);
      if (base instanceof FileDevice && base.fileId === id) return base;
    }
    throw new MdError('EINVAL', `cut: ${name} is not a member file of array ${this.array.name} (only members that are files on this node can be cut)`);
  }

  private async complete(cut: Cut): Promise<void> {
    const results = await Promise.allSettled(cut.copies.map((c) => c.run()));
    const failure = results.find((r) => r.status === 'rejected');
    try {
      if (failure !== undefined) throw failure.reason;
      for (const [i, c] of cut.copies.entries()) await rename(c.target, cut.names[i] as string);
      for (const dir of new Set(cut.names.map((n) => path.dirname(n)))) await fsyncPath(dir);
      cut.state = 'done';
    } catch (err) {
      cut.state = 'failed';
      cut.error = describeError(err);
      await discard(cut.copies, err);
      await Promise.all(cut.names.map((n) => rm(n, { force: true })));
      trace('engine', 'info', () => `snapshot ${cut.id}: copy given up: ${cut.error}`);
    }
    this.events({
      type: 'cut-copied', id: cut.id, ok: cut.state === 'done', ms: Math.round(performance.now() - cut.started),
      bytes: cut.copies.reduce((n, x) => n + x.size, 0),
      longestCloneMs: Math.round(Math.max(0, ...cut.copies.map((x) => x.longestCloneMs)) * 10) / 10, ...(cut.error === undefined ? {} : { error: cut.error }),
    });
  }
}

/** Stops `copies` and removes their files. */
async function discard(copies: readonly CopyBeforeWrite[], cause: unknown): Promise<void> {
  for (const c of copies) c.abort(cause instanceof Error ? cause : new Error(String(cause)));
  await Promise.all(copies.map((c) => rm(c.target, { force: true })));
}
