// The md set_name key of a CSI volume: fits 32 bytes, keeps short names readable, and tells
// long names with a common prefix apart.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeSetName, encodeSetName, matchesName } from '../../src/csi/volume-name.js';

test('a short name is kept as is after the filesystem type', () => {
  assert.equal(encodeSetName('pvc-data', 'ext4'), 'ext4:pvc-data');
  const d = decodeSetName('xfs:pvc-data');
  assert.deepEqual(d, { fsType: 'xfs', key: 'pvc-data' });
  assert.ok(d && matchesName(d, 'pvc-data'));
  assert.ok(d && !matchesName(d, 'pvc-dat'));
});

test('long names fit in 32 bytes and differ when only their tails differ', () => {
  const a = 'pvc-3f0c5a8e-1d2b-4c3d-9e8f-000000000001';
  const b = 'pvc-3f0c5a8e-1d2b-4c3d-9e8f-000000000002';
  const ea = encodeSetName(a, 'ext4');
  const eb = encodeSetName(b, 'ext4');
  assert.ok(Buffer.byteLength(ea) <= 32, ea);
  assert.notEqual(ea, eb);
  const d = decodeSetName(ea);
  assert.ok(d && matchesName(d, a) && !matchesName(d, b));
});

test('multi-byte names are cut on character boundaries within 32 bytes', () => {
  const e = encodeSetName('é'.repeat(40), 'ext4');
  assert.ok(Buffer.byteLength(e) <= 32);
  assert.ok(!e.includes('\ufffd'));
});

test('set names llraid did not write are not volumes', () => {
  assert.equal(decodeSetName('myhost:0'), undefined);
  assert.equal(decodeSetName(''), undefined);
});
