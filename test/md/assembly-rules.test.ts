// Assembly rules for members whose superblocks disagree: a member that missed the clean stop
// (copied while the array ran) is resynced in full over the written chunks, a damaged superblock
// can be left out with force and is named, and members run apart (split brain) are refused.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, openSync, writeSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { assembleArray, createArray } from '../../src/md/index.js';
import { memberFiles, pattern, readMember, tempDir } from './array-fixtures.js';

const MiB = 1024 * 1024;
const CHUNK = 64 * 1024;
const CHUNKS = [1, 9, 70, 300];

function overwrite(path: string, offset: number, data: Buffer): void {
  const fd = openSync(path, 'r+');
  try {
    writeSync(fd, data, 0, data.length, offset);
  } finally {
    closeSync(fd);
  }
}

test('a member copied while the array ran is resynced over every written chunk, not trusted by its one-event margin', async (t) => {
  const dir = tempDir(t);
  const [a, b] = memberFiles(dir, 2, 64 * MiB) as [string, string];
  const copy = join(dir, 'b-copy.img');
  const first = await createArray({ name: 'cp', level: 1, members: [a, b], bitmapChunkSize: CHUNK });
  for (const c of CHUNKS) await first.write(c * CHUNK, pattern(c, CHUNK));
  await first.stop();
  // Running again: the superblocks say "active". The copy is taken now, then the same chunks are
  // rewritten (their bitmap bits were Clean and go Clean again), then the array stops cleanly.
  const { array: running } = await assembleArray({ members: [a, b] });
  copyFileSync(b, copy);
  const newer = CHUNKS.map((c) => pattern(1000 + c, CHUNK));
  for (const [i, c] of CHUNKS.entries()) await running.write(c * CHUNK, newer[i]!);
  await running.stop();

  const { array, report } = await assembleArray({ members: [a, copy] });
  t.after(() => array.stop());
  assert.equal(array.status().members.find((m) => m.name === copy)?.state, 'in_sync', 'one event behind: inside the margin');
  assert.equal(report.unclean, true);
  assert.match(report.resyncReason ?? '', /missed the clean stop/);
  const resync = await array.waitSync();
  assert.equal(resync?.complete, true);
  array.startSync('check');
  assert.equal((await array.waitSync())?.mismatches, 0);
  await array.stop();
  for (const [i, c] of CHUNKS.entries()) assert.ok(readMember(copy, c * CHUNK, CHUNK).equals(newer[i]!), `chunk ${c} on the copy`);
});

test('a member with a damaged superblock stops assembly with a hint, and force leaves it out by name', async (t) => {
  const [a, b] = memberFiles(tempDir(t), 2, 32 * MiB) as [string, string];
  await (await createArray({ name: 'dmg', level: 1, members: [a, b] })).stop();
  overwrite(b, 4096 + 100, Buffer.from('garbage'));
  await assert.rejects(assembleArray({ members: [a, b] }), (err: Error) => {
    assert.match(err.message, new RegExp(`${b}.*checksum`));
    assert.match(err.message, /use force to assemble without this member/);
    return true;
  });
  const { array, report } = await assembleArray({ members: [a, b], force: true });
  t.after(() => array.stop());
  assert.equal(array.status().state, 'degraded');
  assert.equal(report.stale[0]?.name, b);
  assert.match(report.stale[0]?.reason ?? '', /superblock unreadable/);
});

test('members run apart at the same events (split brain) are refused; force keeps the first listed', async (t) => {
  const [a, b] = memberFiles(tempDir(t), 2, 32 * MiB) as [string, string];
  await (await createArray({ name: 'split', level: 1, members: [a, b] })).stop();
  // Each member is started alone, written and stopped: both end at the same events, each
  // recording the other as gone.
  for (const [m, seed] of [[a, 1], [b, 2]] as const) {
    const { array } = await assembleArray({ members: [m], force: true });
    await array.write(0, pattern(seed, CHUNK));
    await array.stop();
  }
  await assert.rejects(assembleArray({ members: [a, b] }), /same events .* record different roles: the array was run apart on each \(split brain\)/);
  const { array, report } = await assembleArray({ members: [b, a], force: true });
  t.after(() => array.stop());
  assert.equal(report.stale[0]?.name, a);
  assert.match(report.stale[0]?.reason ?? '', /split brain/);
  assert.ok((await array.read(0, CHUNK)).equals(pattern(2, CHUNK)), "b's data is kept");
});
