// The bitmap superblock codec: field offsets and values as the kernel lays out bitmap_super_t,
// flag bit numbers, and the magic/version/uuid refusals (llbitmap.md A1, A2, B-o).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  BITMAP_MAGIC,
  BitmapFlag,
  checkBitmapUuid,
  decodeBitmapSuper,
  encodeBitmapSuper,
  hasFlag,
  withFlag,
  type BitmapSuper,
} from '../../src/md/llbitmap/bitmap-superblock.js';
import { MdError } from '../../src/md/errors.js';

const uuid = Uint8Array.from({ length: 16 }, (_, i) => 0xa0 + i);

function sample(): BitmapSuper {
  return {
    magic: BITMAP_MAGIC,
    version: 6,
    uuid,
    events: 0x1122334455667788n,
    eventsCleared: 42n,
    syncSize: 2097152n,
    state: withFlag(0, BitmapFlag.FirstUse, true),
    chunksize: 128,
    daemonSleep: 30,
    writeBehind: 0,
    sectorsReserved: 2032,
    nodes: 0,
    clusterName: '',
  };
}

test('encodes every field at the kernel offset, little-endian, 256 bytes, zero padded', () => {
  const b = encodeBitmapSuper(sample());
  assert.equal(b.length, 256);
  assert.equal(b.subarray(0, 4).toString('latin1'), 'bitm');
  assert.equal(b.readUInt32LE(0), 0x6d746962);
  assert.equal(b.readUInt32LE(4), 6);
  assert.deepEqual(Uint8Array.from(b.subarray(8, 24)), uuid);
  assert.equal(b.readBigUInt64LE(24), 0x1122334455667788n);
  assert.deepEqual([...b.subarray(24, 32)], [0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11]);
  assert.equal(b.readBigUInt64LE(32), 42n);
  assert.equal(b.readBigUInt64LE(40), 2097152n);
  assert.equal(b.readUInt32LE(48), 8); // 1 << FIRST_USE(3)
  assert.equal(b.readUInt32LE(52), 128);
  assert.equal(b.readUInt32LE(56), 30);
  assert.equal(b.readUInt32LE(60), 0);
  assert.equal(b.readUInt32LE(64), 2032);
  assert.equal(b.readUInt32LE(68), 0);
  assert.ok(b.subarray(72).every((x) => x === 0), 'zero padding');
});

test('decode returns what encode wrote, cluster name included', () => {
  const sb = { ...sample(), clusterName: 'c1', nodes: 3, writeBehind: 7 };
  assert.deepEqual(decodeBitmapSuper(encodeBitmapSuper(sb), 'm0'), sb);
});

test('flag bits are the kernel values: STALE 1, WRITE_ERROR 2, FIRST_USE 3, CLEAN 4, DAEMON_BUSY 5, HOSTENDIAN 15', () => {
  assert.equal(withFlag(0, BitmapFlag.Stale, true), 1 << 1);
  assert.equal(withFlag(0, BitmapFlag.WriteError, true), 1 << 2);
  assert.equal(withFlag(0, BitmapFlag.FirstUse, true), 1 << 3);
  assert.equal(withFlag(0, BitmapFlag.Clean, true), 1 << 4);
  assert.equal(withFlag(0, BitmapFlag.DaemonBusy, true), 1 << 5);
  assert.equal(withFlag(0, BitmapFlag.HostEndian, true), 1 << 15);
  assert.equal(hasFlag(0x30, BitmapFlag.Clean), true);
  assert.equal(hasFlag(0x30, BitmapFlag.FirstUse), false);
  assert.equal(withFlag(0x38, BitmapFlag.FirstUse, false), 0x30);
});

test('a wrong magic is refused, naming the member, the expected and the found magic', () => {
  const b = encodeBitmapSuper(sample());
  b.writeUInt32LE(0xdeadbeef, 0);
  assert.throws(
    () => decodeBitmapSuper(b, '/disks/a/m0.img'),
    (e: unknown) =>
      e instanceof MdError &&
      e.code === 'EBADMETA' &&
      e.message === '/disks/a/m0.img: bitmap superblock: expected magic 0x6d746962, found 0xdeadbeef',
  );
});

test('a classic bitmap (version 4) is refused as not lockless', () => {
  const b = encodeBitmapSuper({ ...sample(), version: 4 });
  assert.throws(
    () => decodeBitmapSuper(b, 'm1'),
    (e: unknown) =>
      e instanceof MdError && e.code === 'EBADMETA' && /expected version 6 \(lockless\), found 4/.test(e.message),
  );
});

test('a short buffer is refused', () => {
  assert.throws(
    () => decodeBitmapSuper(new Uint8Array(100), 'm2'),
    (e: unknown) => e instanceof MdError && e.code === 'EBADMETA' && /expected 256 bytes, found 100/.test(e.message),
  );
});

test('a foreign uuid is refused with both uuids in the message', () => {
  const sb = decodeBitmapSuper(encodeBitmapSuper(sample()), 'm0');
  const other = new Uint8Array(16).fill(1);
  assert.throws(
    () => checkBitmapUuid(sb, other, 'm0'),
    (e: unknown) =>
      e instanceof MdError &&
      e.code === 'EBADMETA' &&
      e.message ===
        'm0: bitmap superblock: expected array uuid 01010101:01010101:01010101:01010101, found a0a1a2a3:a4a5a6a7:a8a9aaab:acadaeaf',
  );
  checkBitmapUuid(sb, uuid, 'm0');
});

test('encode refuses a uuid that is not 16 bytes and an over-long cluster name', () => {
  assert.throws(() => encodeBitmapSuper({ ...sample(), uuid: new Uint8Array(15) }), { code: 'EINVAL' });
  assert.throws(() => encodeBitmapSuper({ ...sample(), clusterName: 'x'.repeat(65) }), { code: 'EINVAL' });
});
