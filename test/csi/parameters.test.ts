// StorageClass parameter validation: defaults, accepted forms, and INVALID_ARGUMENT naming the
// parameter for everything else.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CsiError } from '../../src/csi/errors.js';
import { nearCopiesOf, parseVolumeParameters, sizeOrUndefined } from '../../src/csi/parameters.js';

function rejects(params: Record<string, string>, name: string): void {
  assert.throws(
    () => parseVolumeParameters(params),
    (err: unknown) => err instanceof CsiError && err.code === 'INVALID_ARGUMENT' && err.message.includes(name),
    `${JSON.stringify(params)} should be rejected naming ${name}`,
  );
}

test('no parameters give a two-member raid1 with llbitmap, 512 KiB chunks and ext4', () => {
  assert.deepEqual(parseVolumeParameters({}), {
    level: 1, members: 2, chunkSize: 512 * 1024, bitmap: 'llbitmap', fsType: 'ext4', replicas: 1, disklessAttach: false,
  });
});

test('every parameter is read, sizes with units, raid0 defaults to no bitmap', () => {
  assert.deepEqual(parseVolumeParameters({ level: '10', members: '4', chunkSize: '64K', bitmap: 'none', fsType: 'xfs' }), {
    level: 10, members: 4, chunkSize: 65536, bitmap: 'none', fsType: 'xfs', replicas: 1, disklessAttach: false,
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

/** The message of the INVALID_ARGUMENT `params` are refused with. */
function refusal(params: Record<string, string>): string {
  try {
    parseVolumeParameters(params);
  } catch (err) {
    assert.ok(err instanceof CsiError && err.code === 'INVALID_ARGUMENT', String(err));
    return err.message;
  }
  throw new Error(`${JSON.stringify(params)} should be rejected`);
}

test('replicas: one member per node for raid1, two per node for raid10 with one near copy per node', () => {
  const r1 = parseVolumeParameters({ replicas: '2' });
  assert.deepEqual([r1.level, r1.members, r1.replicas, r1.disklessAttach, r1.bitmap], [1, 2, 2, false, 'llbitmap']);
  assert.equal(parseVolumeParameters({ replicas: '3' }).members, 3);
  assert.equal(parseVolumeParameters({ replicas: '3', members: '3' }).members, 3);
  const r10 = parseVolumeParameters({ level: 'raid10', replicas: '2' });
  assert.deepEqual([r10.members, nearCopiesOf(r10)], [4, 2]);
  const r10x3 = parseVolumeParameters({ level: '10', replicas: '3', members: '9' });
  assert.deepEqual([r10x3.members, nearCopiesOf(r10x3)], [9, 3]);
  assert.equal(nearCopiesOf(parseVolumeParameters({ level: '10', members: '4' })), 2);
  assert.equal(parseVolumeParameters({ replicas: '1', level: '5' }).replicas, 1);
});

test('replicas: impossible combinations say what would work', () => {
  assert.match(refusal({ replicas: '4' }), /"replicas": expected 1 \(node-local\), 2 or 3/);
  assert.match(refusal({ replicas: 'two' }), /"replicas"/);
  assert.match(refusal({ replicas: '2', level: '5' }), /replicas needs level raid1 or raid10 \(copies on distinct nodes\); raid5 keeps every member on one node: use replicas 1/);
  assert.match(refusal({ replicas: '2', level: '0' }), /raid0 keeps every member on one node/);
  assert.match(refusal({ replicas: '2', level: '6' }), /raid6/);
  assert.match(refusal({ replicas: '2', members: '3' }), /members must equal replicas \(2\), found 3; leave members out/);
  assert.match(refusal({ replicas: '2', level: '10', members: '5' }), /multiple of replicas \(2\).*found 5; the default is 4/);
  assert.match(refusal({ replicas: '3', level: '10', members: '4' }), /multiple of replicas \(3\) from 3 to 63, found 4; the default is 6/);
  assert.match(refusal({ replicas: '2', bitmap: 'none' }), /replicas needs llbitmap/);
});

test('disklessAttach is true or false, and only for replicated volumes', () => {
  assert.equal(parseVolumeParameters({ replicas: '2', disklessAttach: 'true' }).disklessAttach, true);
  assert.equal(parseVolumeParameters({ replicas: '2', disklessAttach: 'false' }).disklessAttach, false);
  assert.match(refusal({ replicas: '2', disklessAttach: 'yes' }), /"disklessAttach": expected true or false, found "yes"/);
  assert.match(refusal({ disklessAttach: 'true' }), /use replicas 2 or 3 with it/);
});

test('recovery speeds: both or neither, min ≤ max, replicated volumes only', () => {
  assert.deepEqual(parseVolumeParameters({ replicas: '2', recoverySpeedMinKiB: '1000', recoverySpeedMaxKiB: '50000' }).recoverySpeed, { minKiB: 1000, maxKiB: 50000 });
  assert.equal(parseVolumeParameters({ replicas: '2' }).recoverySpeed, undefined);
  assert.match(refusal({ replicas: '2', recoverySpeedMinKiB: '1000' }), /go together: give both, found only recoverySpeedMinKiB/);
  assert.match(refusal({ replicas: '2', recoverySpeedMinKiB: '10', recoverySpeedMaxKiB: '5' }), /"recoverySpeedMaxKiB": expected at least recoverySpeedMinKiB \(10\), found 5/);
  assert.match(refusal({ replicas: '2', recoverySpeedMinKiB: '0', recoverySpeedMaxKiB: '5' }), /"recoverySpeedMinKiB": expected a whole number/);
  assert.match(refusal({ recoverySpeedMinKiB: '1', recoverySpeedMaxKiB: '5' }), /node-local volume recovers at the node's syncSpeedMin\/syncSpeedMax/);
});
