// StorageClass parameter validation: defaults, accepted forms, and INVALID_ARGUMENT naming the
// parameter for everything else.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CsiError } from '../../src/csi/errors.js';
import { parseVolumeParameters, sizeOrUndefined } from '../../src/csi/parameters.js';

function rejects(params: Record<string, string>, name: string): void {
  assert.throws(
    () => parseVolumeParameters(params),
    (err: unknown) => err instanceof CsiError && err.code === 'INVALID_ARGUMENT' && err.message.includes(name),
    `${JSON.stringify(params)} should be rejected naming ${name}`,
  );
}

test('no parameters give a two-member raid1 with llbitmap, 512 KiB chunks and ext4', () => {
  assert.deepEqual(parseVolumeParameters({}), { level: 1, members: 2, chunkSize: 512 * 1024, bitmap: 'llbitmap', fsType: 'ext4' });
});

test('every parameter is read, sizes with units, raid0 defaults to no bitmap', () => {
  assert.deepEqual(parseVolumeParameters({ level: '10', members: '4', chunkSize: '64K', bitmap: 'none', fsType: 'xfs' }), {
    level: 10, members: 4, chunkSize: 65536, bitmap: 'none', fsType: 'xfs',
  });
  assert.equal(parseVolumeParameters({ level: '0', members: '3' }).bitmap, 'none');
  assert.equal(parseVolumeParameters({ level: '6' }).members, 4);
  assert.equal(parseVolumeParameters({ level: 'raid5', members: '3' }).level, 5);
});

test('provisioner metadata keys are not parameters', () => {
  assert.equal(parseVolumeParameters({ 'csi.storage.k8s.io/pvc/name': 'data' }).level, 1);
});

test('unknown and invalid parameters are INVALID_ARGUMENT naming the parameter', () => {
  rejects({ size: '1G' }, '"size"');
  rejects({ level: '3' }, '"level"');
  rejects({ members: 'two' }, '"members"');
  rejects({ level: '5', members: '2' }, '"members"');
  rejects({ level: '6', members: '3' }, '"members"');
  rejects({ chunkSize: '3K' }, '"chunkSize"');
  rejects({ chunkSize: '1K' }, '"chunkSize"');
  rejects({ chunkSize: '-4K' }, '"chunkSize"');
  rejects({ bitmap: 'internal' }, '"bitmap"');
  rejects({ level: '0', bitmap: 'llbitmap' }, '"bitmap"');
  rejects({ fsType: 'btrfs' }, '"fsType"');
});

test('sizes parse with binary units and reject garbage', () => {
  assert.equal(sizeOrUndefined('4096'), 4096);
  assert.equal(sizeOrUndefined('1M'), 1048576);
  assert.equal(sizeOrUndefined('2GiB'), 2 * 1024 ** 3);
  assert.equal(sizeOrUndefined('1.5G'), undefined);
  assert.equal(sizeOrUndefined('abc'), undefined);
});
