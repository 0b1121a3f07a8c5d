// Copied members get an identity of their own (md/member-identity.ts): after reidentifyMembers
// the copies assemble as an array with the new uuid and name, new device uuids, the copied data
// and bitmap (its written chunks as they were), next to the untouched source; members of two
// arrays and a member a running array holds are refused before anything is written.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { assembleArray, createArray, readSuperblockFile, reidentifyMembers, writtenChunks } from '../../src/md/index.js';
import { DATA_OFFSET, fileHash, memberFiles, pattern, tempDir } from './array-fixtures.js';

const KiB = 1024;
const MiB = 1024 * KiB;

for (const { level, n } of [{ level: 1, n: 2 }, { level: 10, n: 3 }, { level: 5, n: 3 }] as const) {
  test(`raid${level} x${n}: copies reidentified assemble with the new ids and the source's data and written chunks`, async (t) => {
    const dir = tempDir(t);
    const src = memberFiles(dir, n, DATA_OFFSET + 8 * MiB);
    const a = await createArray({ name: 'ext4:src', level, members: src, chunkSize: 64 * KiB, bitmap: 'llbitmap', autoSync: false });
    const data = pattern(7, 3 * MiB);
    await a.write(MiB, data);
    await a.stop();
    const before = await writtenChunks(src[0]!);
    const copies = src.map((p) => `${p}.copy`);
    for (const [i, p] of src.entries()) copyFileSync(p, copies[i]!);
    const srcHashes = src.map(fileHash);

    const uuid = randomBytes(16);
    await reidentifyMembers(copies, { uuid, name: 'ext4:copy' });
    assert.deepEqual(src.map(fileHash), srcHashes, 'the source members are untouched');
    for (const [i, c] of copies.entries()) {
      const sb = await readSuperblockFile(c);
      const old = await readSuperblockFile(src[i]!);
      assert.ok(sb.setUuid.equals(uuid));
      assert.equal(sb.setName, 'ext4:copy');
      assert.ok(!sb.deviceUuid.equals(old.deviceUuid));
      assert.equal(sb.events, old.events);
    }
    const after = await writtenChunks(copies[0]!);
    assert.ok(before && after);
    assert.ok(after.bits.equals(before.bits), 'the copy keeps the written chunks');
    assert.ok(after.bits.some((b) => b !== 0), 'some chunks were written');

    const { array, report } = await assembleArray({ members: copies, uuid, autoSync: false });
    t.after(() => array.stop());
    assert.equal(report.unclean, false);
    assert.deepEqual(report.bitmap?.rejected ?? [], [], 'every bitmap copy carries the new uuid');
    assert.ok((await array.read(MiB, data.length)).equals(data));
  });
}

test('members of two arrays, and members a running array holds, are refused before anything is written', async (t) => {
  const dir = tempDir(t);
  const x = memberFiles(dir, 2, DATA_OFFSET + 4 * MiB, 'x');
  const y = memberFiles(dir, 2, DATA_OFFSET + 4 * MiB, 'y');
  await (await createArray({ name: 'ext4:x', level: 1, members: x, bitmap: 'llbitmap', autoSync: false })).stop();
  const running = await createArray({ name: 'ext4:y', level: 1, members: y, bitmap: 'llbitmap', autoSync: false });
  t.after(() => running.stop());
  const hashes = [...x, ...y].map(fileHash);
  await assert.rejects(reidentifyMembers([x[0]!, y[0]!], { uuid: randomBytes(16), name: 'ext4:z' }), (e: unknown) => (e as { code?: string }).code === 'EBUSY');
  const ycopy = `${y[1]!}.copy`;
  copyFileSync(y[1]!, ycopy);
  await assert.rejects(reidentifyMembers([x[0]!, ycopy], { uuid: randomBytes(16), name: 'ext4:z' }), (e: unknown) => (e as { code?: string }).code === 'EUUID');
  assert.deepEqual([...x, ...y].map(fileHash), hashes, 'nothing was written');
});
