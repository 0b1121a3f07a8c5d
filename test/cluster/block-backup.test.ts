// The backup helpers of snapshots.test.ts on real files: the lister's JSON (offsets of 0
// omitted, as protobuf JSON does) becomes ordered ranges, and a full image plus the changed
// ranges of a second state rebuild that state byte for byte. Needs no cluster.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { copyRanges, parseListerJson, sha256Prefix, writeAt } from './block-backup.js';

test('parseListerJson: records to ordered ranges; a 0 offset may be omitted; overlaps and out-of-volume ranges are refused', () => {
  const listed = parseListerJson('[{"block_metadata_type":2,"volume_capacity_bytes":1048576,"block_metadata":[{"size_bytes":4096},{"byte_offset":65536,"size_bytes":8192}]},'
    + '{"block_metadata_type":2,"volume_capacity_bytes":1048576,"block_metadata":[{"byte_offset":1044480,"size_bytes":4096}]}]');
  assert.deepEqual(listed, {
    ranges: [{ offset: 0, length: 4096 }, { offset: 65536, length: 8192 }, { offset: 1044480, length: 4096 }],
    volumeCapacityBytes: 1048576,
    bytes: 16384,
  });
  assert.deepEqual(parseListerJson('[]'), { ranges: [], volumeCapacityBytes: 0, bytes: 0 });
  assert.throws(() => parseListerJson('[{"volume_capacity_bytes":8192,"block_metadata":[{"size_bytes":4096},{"byte_offset":2048,"size_bytes":4096}]}]'), /ordered, disjoint/);
  assert.throws(() => parseListerJson('[{"volume_capacity_bytes":8192,"block_metadata":[{"byte_offset":8192,"size_bytes":4096}]}]'), /within the volume/);
});

test('copyRanges: a full image from allocated ranges plus a delta from a later state equals that state', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'llraid-block-backup-'));
  try {
    const size = 8 * 1024 * 1024;
    const volume = join(dir, 'volume');
    await writeFile(volume, Buffer.alloc(size));
    await writeAt(volume, [{ offset: 0, data: randomBytes(1 << 20) }, { offset: 5 << 20, data: randomBytes(1 << 20) }]);
    const state1 = join(dir, 'state1');
    await copyFile(volume, state1);
    const full = join(dir, 'full');
    await copyRanges(state1, full, [{ offset: 0, length: 1 << 20 }, { offset: 5 << 20, length: 1 << 20 }], size);
    assert.equal(await sha256Prefix(full, size), await sha256Prefix(state1, size));
    await writeAt(volume, [{ offset: 3 << 20, data: randomBytes(65536) }, { offset: 5 << 20, data: randomBytes(4096) }]);
    const incremental = join(dir, 'incremental');
    await copyFile(full, incremental);
    await copyRanges(volume, incremental, [{ offset: 3 << 20, length: 65536 }, { offset: 5 << 20, length: 4096 }], size);
    assert.equal(await sha256Prefix(incremental, size), await sha256Prefix(volume, size));
    assert.notEqual(await sha256Prefix(incremental, size), await sha256Prefix(state1, size));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
