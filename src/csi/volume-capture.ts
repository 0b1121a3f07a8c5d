// Copies every member file of a node-local volume as of one instant (a snapshot, a clone):
// crash-consistent across members. A staged volume's members are reflinked (in pieces) and
// caught up while it runs, then its engine is frozen (control op `freeze`: writes held, in-flight
// ones drained) while the copies catch up with the last writes, then thawed; the pause is bounded
// by the freeze's timeout and measured. What the freeze writes first depends on what a copy can
// recover from (consistencyFor): nothing, for a volume whose copy resyncs only the chunks its
// bitmap marks Dirty (the copy then holds what a crash at the instant would have left, without
// torn writes); the bitmap and clean superblocks, for one whose copy would otherwise resync in
// full. An unstaged volume's members are locked (the flock every writable member open takes), so
// no engine can start on them during the copy.

import { catchUpClone, writeBackPages, type CatchUp } from '../block/file-clone.js';
import { FileDevice } from '../block/file-device.js';
import type { PhaseTimer } from '../common/phase-timer.js';
import { describeError, trace } from '../common/trace.js';
import type { FreezeConsistency } from '../engine/control/protocol.js';
import { CsiError } from './errors.js';
import { cloneFile, cloneFileInPieces } from './reflink.js';
import type { VolumeRecord } from './volume-catalog.js';

/** What the capture needs of a staged volume's engine (NodeServer, over its control socket). */
export interface VolumeFreezer {
  freeze(volumeId: string, timeoutMs: number, consistency: FreezeConsistency): Promise<{ drainMs: number }>;
  thaw(volumeId: string): Promise<{ pausedMs: number }>;
}

/** How long a staged volume's writes may be held for a snapshot before it is given up. */
export const SNAPSHOT_PAUSE_MS = 10_000;

/**
 * What a freeze of `volume` must leave for its copies. A crash's state costs a copy a resync of
 * the chunks written since the bitmap last went Clean (seconds' worth of writes) with an
 * llbitmap, and nothing without redundancy (raid0 has no sync); without a bitmap a redundant
 * copy would resync every byte, so there the freeze writes the members clean first.
 */
export function consistencyFor(volume: Pick<VolumeRecord, 'level' | 'bitmap'>): FreezeConsistency {
  return volume.level === 0 || volume.bitmap === 'llbitmap' ? 'crash' : 'clean';
}

export interface CaptureOptions {
  /** The longest pause; a freeze that outlives it aborts the capture. */
  timeoutMs?: number;
  /** Marks the capture's phases (write-back, freeze, clone, thaw) for the caller's log line. */
  timer?: PhaseTimer;
}

/**
 * Reflinks `volume`'s member files (in `volume.members` order) to `dsts`. → how long new writes
 * were held (0 when the volume was not staged). A staged volume whose freeze timed out before
 * the copies were done is ABORTED (the copies may hold writes from after the instant): the
 * caller removes them.
 */
export async function captureMembers(
  volume: VolumeRecord,
  dsts: readonly string[],
  staged: boolean,
  freezer: VolumeFreezer,
  { timeoutMs = SNAPSHOT_PAUSE_MS, timer }: CaptureOptions = {},
): Promise<{ pauseMs: number }> {
  const srcs = volume.members.map((m) => m.path);
  if (!staged) {
    const locks: FileDevice[] = [];
    try {
      for (const p of srcs) locks.push(await FileDevice.open(p, { exclusive: true }));
      for (const [i, p] of srcs.entries()) await cloneFile(p, dsts[i] as string);
    } finally {
      await Promise.allSettled(locks.map((d) => d.close()));
    }
    timer?.mark('clone');
    return { pauseMs: 0 };
  }
  // A whole clone is a transaction per extent (hundreds of ms for a large member on a loaded
  // disk, and the source's writes wait for all of it): made in pieces while writes still flow,
  // then caught up (the ranges written since are cloned again, file-clone.ts) once outside the
  // pause, which writes back what came meanwhile, and once inside it, where only the last few
  // writes are left. Exact inside the pause: the drain left
  // nothing in flight and new requests wait. The engine's bitmap daemon may still write a bitmap
  // page meanwhile (a chunk going Dirty → Clean, its data already equal in every member); a copy
  // that misses it owes that chunk a resync, never a loss.
  await Promise.all(srcs.map((p, i) => cloneFileInPieces(p, dsts[i] as string)));
  timer?.mark('clone');
  // The clones' extents as caught up: nothing but this capture writes them, so the catch-up in
  // the pause maps only the sources.
  const before = await Promise.all(srcs.map((p, i) => catchUpClone(p, dsts[i] as string)));
  timer?.mark('catch-up');
  // What was written during the catch-up, written back before the pause: a write to a block the
  // clone shares is a copy on write, whose writeback allocates and remaps block by block.
  await Promise.all(srcs.map(writeBackPages));
  timer?.mark('write-back');
  const consistency = consistencyFor(volume);
  const { drainMs } = await freezer.freeze(volume.id, timeoutMs, consistency);
  timer?.mark('freeze');
  let cloned: unknown;
  let caught: CatchUp[] = [];
  try {
    caught = await Promise.all(srcs.map((p, i) => catchUpClone(p, dsts[i] as string, before[i]?.extents)));
  } catch (err) {
    cloned = err;
  }
  timer?.mark('catch-up frozen');
  let pausedMs: number;
  try {
    ({ pausedMs } = await freezer.thaw(volume.id));
  } catch (err) {
    if (cloned !== undefined) throw cloned;
    throw new CsiError('ABORTED', `volume ${volume.id}: writes were held longer than the ${timeoutMs} ms a snapshot may pause them, so the engine resumed them before the copy was done: ${describeError(err)}`);
  }
  timer?.mark('thaw');
  if (cloned !== undefined) throw cloned;
  trace('csi', 'info', () => `volume ${volume.id}: members caught up while frozen (${consistency}): ${caught.reduce((n, c) => n + c.ranges, 0)} ranges, ${caught.reduce((n, c) => n + c.bytes, 0)} bytes cloned again; writes held ${pausedMs} ms (drain ${drainMs} ms)`);
  return { pauseMs: pausedMs };
}
