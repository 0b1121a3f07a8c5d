// The reverse direction of byte compatibility: a superblock written by Linux md itself (kernel
// 6.1 + mdadm 4.2 `--create --level=1 --bitmap=internal`, captured from the member's 4 KiB at
// sector 8 into fixtures/linux-raid1-superblock.bin) decodes to what mdadm --examine printed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { decodeSuperblock, encodeSuperblock, formatUuid, RESYNC_NONE, ROLE_SPARE } from '../../src/md/superblock.js';

const block = readFileSync(fileURLToPath(new URL('./fixtures/linux-raid1-superblock.bin', import.meta.url)));

test('a superblock written by Linux md decodes field by field', () => {
  const sb = decodeSuperblock(block, 'linux-member', 64 << 20);
  assert.equal(formatUuid(sb.setUuid), 'a2bc4f51:b58c2d7d:a8089195:b38c5662');
  assert.equal(sb.setName, '(none):fromlinux');
  assert.equal(sb.level, 1);
  assert.equal(sb.raidDisks, 2);
  assert.equal(sb.events, 17n);
  assert.equal(sb.dataOffset, 2048);
  assert.equal(sb.dataSize, 129024);
  assert.equal(sb.superOffset, 8);
  assert.equal(sb.featureMap, 1);
  assert.equal(sb.bitmapOffset, 8);
  assert.equal(sb.resyncOffset, RESYNC_NONE);
  assert.equal(sb.devNumber, 0);
  assert.equal(formatUuid(sb.deviceUuid), '0755316f:1af79fc2:045dbe65:135de568');
  assert.equal(sb.devRoles.length, 128);
  assert.deepEqual(sb.devRoles.slice(0, 3), [0, 1, ROLE_SPARE]);
});

test('re-encoding the Linux superblock reproduces its bytes, checksum included', () => {
  const sb = decodeSuperblock(block, 'linux-member', 64 << 20);
  const again = encodeSuperblock(sb);
  assert.deepEqual(again.subarray(0, 256 + 128 * 2), block.subarray(0, 256 + 128 * 2));
  assert.equal(sb.bblogOffset, 16, 'the bad block log mdadm reserved is carried over');
  assert.equal(sb.bblogSize, 8);
});
