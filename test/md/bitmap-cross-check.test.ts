// The bitmap is never taken from one member blindly: every in-sync member's copy is read at
// assembly, a damaged copy is left out (and named), and chunks the copies disagree on are
// resynced. Reproduces the audit's case: a first member whose bitmap was zeroed (all Unwritten)
// made a recovery onto a new member skip every chunk, leaving it empty under a [UU] array.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { openSync, readSync, writeSync, closeSync } from 'node:fs';
import { assembleArray, createArray, examineMember } from '../../src/md/index.js';
import { crossCheck } from '../../src/md/llbitmap/cross-check.js';
import { BITMAP_DATA_OFFSET } from '../../src/md/llbitmap/bitmap-superblock.js';
import { State } from '../../src/md/llbitmap/states.js';
import { memberFiles, pattern, readMember, tempDir } from './array-fixtures.js';

const MiB = 1024 * 1024;
/** Where llraid members keep the bitmap: superblock at sector 8, bitmap 8 sectors after it. */
const BITMAP_AREA = 16 * 512;
const CHUNK = 64 * 1024;
const WRITTEN = [0, 3, 40, 100, 300];

function overwrite(path: string, offset: number, data: Buffer): void {
  const fd = openSync(path, 'r+');
  try {
    writeSync(fd, data, 0, data.length, offset);
  } finally {
    closeSync(fd);
  }
}

/** Chunks a member's copy holds as written (not Unwritten): the written ones and the neighbours infect raised. */
function writtenChunks(path: string): number {
  const b = Buffer.alloc(4096);
  const fd = openSync(path, 'r');
  try {
    readSync(fd, b, 0, b.length, BITMAP_AREA + BITMAP_DATA_OFFSET);
  } finally {
    closeSync(fd);
  }
  return b.filter((s) => s !== State.Unwritten).length;
}

async function arrayWithData(paths: string[]): Promise<Buffer[]> {
  const a = await createArray({ name: 'xc', level: 1, members: paths, bitmapChunkSize: CHUNK });
  const data = WRITTEN.map((c) => pattern(50 + c, CHUNK));
  for (const [i, c] of WRITTEN.entries()) await a.write(c * CHUNK, data[i]!);
  await a.stop();
  return data;
}

test('a zeroed bitmap on the first member does not make a recovery skip written chunks', async (t) => {
  const [m0, m1, m2] = memberFiles(tempDir(t), 3, 64 * MiB) as [string, string, string];
  const data = await arrayWithData([m0, m1]);
  const written = writtenChunks(m1);
  assert.ok(written >= WRITTEN.length);
  // Every chunk byte of m0's copy becomes Unwritten (0); its bitmap superblock stays valid.
  overwrite(m0, BITMAP_AREA + BITMAP_DATA_OFFSET, Buffer.alloc(64 * 1024));
  const { array, report } = await assembleArray({ members: [m0, m1] });
  t.after(() => array.stop());
  assert.equal(report.bitmap?.disagreeing, written, 'the copies disagree on exactly the chunks m1 holds as written');
  assert.deepEqual(report.bitmap?.rejected, []);
  await array.waitSync();
  // Replace m1 by a new member m2: the recovery must copy every written chunk onto it.
  await array.fail(m1);
  await array.remove(m1);
  await array.add(m2);
  const recovery = await array.waitSync();
  assert.equal(recovery?.mode, 'recovery');
  assert.equal(recovery?.bytesSynced, written * CHUNK, 'every written chunk, and only those');
  await array.stop();
  for (const [i, c] of WRITTEN.entries()) assert.ok(readMember(m2, c * CHUNK, CHUNK).equals(data[i]!), `chunk ${c} on the new member`);
});

test('a bitmap copy with a damaged superblock is left out, named, and rewritten from the others', async (t) => {
  const [m0, m1] = memberFiles(tempDir(t), 2, 64 * MiB) as [string, string];
  await arrayWithData([m0, m1]);
  const written = writtenChunks(m1);
  overwrite(m0, BITMAP_AREA, Buffer.alloc(512));
  const { array, report } = await assembleArray({ members: [m0, m1] });
  assert.equal(report.bitmap?.rejected.length, 1);
  assert.equal(report.bitmap?.rejected[0]?.name, m0);
  assert.match(report.bitmap?.rejected[0]?.reason ?? '', /magic/);
  assert.deepEqual(report.bitmap?.members, [m1]);
  assert.equal(array.status().bitmap.counts.clean, written, 'the good copy is what the array uses');
  await array.stop();
  // The damaged copy was written again from the merged bitmap.
  const again = await assembleArray({ members: [m0, m1] });
  t.after(() => again.array.stop());
  assert.deepEqual(again.report.bitmap?.rejected, []);
  assert.equal(again.report.bitmap?.disagreeing, 0);
  assert.equal((await examineMember(m0)).setName, 'xc');
});

test('assembly fails with a clear error when no member holds a valid bitmap', async (t) => {
  const [m0, m1] = memberFiles(tempDir(t), 2, 64 * MiB) as [string, string];
  await arrayWithData([m0, m1]);
  for (const m of [m0, m1]) overwrite(m, BITMAP_AREA, Buffer.alloc(512));
  await assert.rejects(assembleArray({ members: [m0, m1] }), /bitmap.*magic/);
});

test('merging copies: agreement costs nothing, written beside never-written owes a sync', () => {
  const area = (states: number[]): { data: Buffer } => {
    const b = Buffer.alloc(BITMAP_DATA_OFFSET + states.length);
    states.forEach((s, i) => (b[BITMAP_DATA_OFFSET + i] = s));
    return { data: b };
  };
  const same = crossCheck([area([State.Clean, State.Unwritten]), area([State.Clean, State.Unwritten])], 2);
  assert.equal(same.disagreeing, 0);
  const { area: merged, disagreeing } = crossCheck([
    area([State.Unwritten, State.Clean, State.Clean, State.Unwritten, State.CleanUnwritten]),
    area([State.Clean, State.Dirty, State.Clean, State.Unwritten, State.Unwritten]),
    area([State.Clean, State.Clean, State.Clean, State.Unwritten, State.CleanUnwritten]),
  ], 5);
  assert.equal(disagreeing, 3);
  assert.deepEqual([...merged.subarray(BITMAP_DATA_OFFSET)], [State.NeedSync, State.Dirty, State.Clean, State.Unwritten, State.Unwritten]);
});
