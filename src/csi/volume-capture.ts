// Copies every member file of a node-local volume as of one instant (a snapshot, a clone):
// crash-consistent across members. A staged volume's engine is frozen (control op `freeze`:
// writes held, in-flight ones drained, bitmap and superblocks written clean) while the members
// are reflinked, then thawed; the pause is bounded by the freeze's timeout and measured. An
// unstaged volume's members are locked (the flock every writable member open takes), so no
// engine can start on them during the copy.

import { promises as fs } from 'node:fs';
import { FileDevice } from '../block/file-device.js';
import { describeError, trace } from '../common/trace.js';
import { CsiError } from './errors.js';
import { cloneFile } from './reflink.js';
import type { VolumeRecord } from './volume-catalog.js';

/** What the capture needs of a staged volume's engine (NodeServer, over its control socket). */
export interface VolumeFreezer {
  freeze(volumeId: string, timeoutMs: number): Promise<{ drainMs: number }>;
  thaw(volumeId: string): Promise<{ pausedMs: number }>;
}

/** How long a staged volume's writes may be held for a snapshot before it is given up. */
export const SNAPSHOT_PAUSE_MS = 10_000;

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
  timeoutMs = SNAPSHOT_PAUSE_MS,
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
    return { pauseMs: 0 };
  }
  // Most of a pause is the writeback a clone must do first (the engine writes through the page
  // cache): done here, before writes are held, the freeze only waits for what came since.
  await Promise.all(srcs.map(writeBack));
  const { drainMs } = await freezer.freeze(volume.id, timeoutMs);
  let cloned: unknown;
  try {
    await Promise.all(srcs.map((p, i) => cloneFile(p, dsts[i] as string)));
  } catch (err) {
    cloned = err;
  }
  let pausedMs: number;
  try {
    ({ pausedMs } = await freezer.thaw(volume.id));
  } catch (err) {
    if (cloned !== undefined) throw cloned;
    throw new CsiError('ABORTED', `volume ${volume.id}: writes were held longer than the ${timeoutMs} ms a snapshot may pause them, so the engine resumed them before the copy was done: ${describeError(err)}`);
  }
  if (cloned !== undefined) throw cloned;
  trace('csi', 'info', () => `volume ${volume.id}: members copied while frozen: writes held ${pausedMs} ms (drain ${drainMs} ms)`);
  return { pauseMs: pausedMs };
}

/** Writes a member file's dirty pages back (a read-only descriptor may ask for that on Linux). */
async function writeBack(file: string): Promise<void> {
  const handle = await fs.open(file, 'r');
  try {
    await handle.datasync();
  } finally {
    await handle.close();
  }
}
