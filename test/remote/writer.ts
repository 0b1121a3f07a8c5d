// A writer for the end-to-end tests of members on other nodes: 4 KiB writes through an engine's
// NBD socket (the test process's own NBD client), each with a pattern that names its sequence
// number, at a fixed queue depth, keeping a log of what was issued and what was acknowledged. The
// log is the oracle: every acknowledged write must be read back, whatever happened meanwhile.

import { createHash } from 'node:crypto';
import { NbdClientDevice } from '../../src/nbd/index.js';

export const BLOCK = 4096;

export interface WriteRecord {
  seq: number;
  offset: number;
  /** performance.now() when the write was handed to the client. */
  issuedAt: number;
  /** When it was acknowledged, or undefined (not yet, or failed). */
  ackedAt?: number;
  error?: string;
  /** When it failed. */
  failedAt?: number;
}

/** The 4 KiB block write `seq` puts down: the sequence number, the offset, then hash bytes. */
export function patternFor(seq: number, offset: number): Buffer {
  const b = Buffer.alloc(BLOCK);
  let h = createHash('sha256').update(`${seq}@${offset}`).digest();
  for (let at = 16; at < BLOCK; at += h.length) {
    h.copy(b, at);
    h = createHash('sha256').update(h).digest();
  }
  b.writeUInt32LE(0x6c6c7277, 0); // "wrll"
  b.writeUInt32LE(seq, 4);
  b.writeDoubleLE(offset, 8);
  return b;
}

export interface Writer {
  readonly log: WriteRecord[];
  acked(): WriteRecord[];
  /** Resolves once the writer has stopped issuing and every write in flight has settled. */
  stop(): Promise<void>;
  /** Settles when the writer has stopped on its own (every offset used, or on the first error with stopOnError). */
  readonly done: Promise<void>;
  device: NbdClientDevice;
}

/** Where write `seq` goes; undefined ends the writer; a promise holds it until it settles. */
export type OffsetSource = readonly number[] | ((seq: number) => number | undefined | Promise<number | undefined>);

/**
 * Writes the offsets `source` gives (in order, each once), `depth` at a time, through `uri` until
 * stopped or the offsets run out. A failed write is recorded, never thrown; with `stopOnError` the
 * writer stops issuing at the first one (as an application would after EIO), else it goes on.
 */
export async function startWriter(uri: string, source: OffsetSource, options: { depth?: number; stopOnError?: boolean; pauseMs?: number } = {}): Promise<Writer> {
  const offsetOf = typeof source === 'function' ? source : (seq: number) => source[seq];
  const device = await NbdClientDevice.connect({ uri, timeoutMs: 60_000 });
  const log: WriteRecord[] = [];
  let next = 0;
  let stopping = false;
  const worker = async (): Promise<void> => {
    while (!stopping) {
      const seq = next++;
      const offset = await offsetOf(seq);
      if (offset === undefined || stopping) break;
      const rec: WriteRecord = { seq, offset, issuedAt: performance.now() };
      log.push(rec);
      try {
        await device.write(offset, patternFor(seq, offset));
        rec.ackedAt = performance.now();
      } catch (err) {
        rec.error = (err as Error).message;
        rec.failedAt = performance.now();
        if (options.stopOnError) stopping = true;
      }
      if (options.pauseMs) await new Promise((r) => setTimeout(r, options.pauseMs));
    }
  };
  const done = Promise.all(Array.from({ length: options.depth ?? 4 }, worker)).then(() => undefined);
  return {
    log,
    device,
    done,
    acked: () => log.filter((r) => r.ackedAt !== undefined),
    stop: async () => {
      stopping = true;
      await done;
    },
  };
}

/** The acknowledged writes whose pattern `read` does not return: [] when none is lost. */
export async function lostWrites(records: readonly WriteRecord[], read: (offset: number) => Promise<Buffer>): Promise<WriteRecord[]> {
  const lost: WriteRecord[] = [];
  for (const r of records) {
    if (!(await read(r.offset)).equals(patternFor(r.seq, r.offset))) lost.push(r);
  }
  return lost;
}
