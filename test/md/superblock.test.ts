// Unit tests of the md 1.2 superblock codec: round trip, checksum, and each kind of bad metadata
// refused with a clear EBADMETA error.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryDevice } from '../../src/block/memory-device.js';
import {
  decodeSuperblock, encodeSuperblock, readSuperblock, superblockChecksum, RESYNC_NONE, ROLE_FAULTY,
  SUPER_OFFSET_BYTES, type Superblock,
} from '../../src/md/superblock.js';
import { MdError } from '../../src/md/errors.js';

const MEMBER = 64 << 20;

function sample(): Superblock {
  return {
    featureMap: 1, setUuid: Buffer.from('00112233445566778899aabbccddeeff', 'hex'), setName: 'pvc-1',
    ctime: 1_700_000_000, level: 10, layout: 0x102, size: 100_000, chunkSize: 128, raidDisks: 3,
    bitmapOffset: 8, dataOffset: 2048, dataSize: (MEMBER >> 9) - 2048, superOffset: 8, recoveryOffset: 0,
    devNumber: 1, cntCorrectedRead: 0, deviceUuid: Buffer.alloc(16, 7), devflags: 0, bblogShift: 0, bblogSize: 0, bblogOffset: 0, utime: 1_700_000_500,
    events: 12345678901n, resyncOffset: RESYNC_NONE, devRoles: [0, 1, ROLE_FAULTY],
  };
}

function expectBadMeta(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof MdError);
    assert.equal(err.code, 'EBADMETA');
    assert.match(err.message, pattern);
    return true;
  });
}

test('a superblock decodes to exactly what was encoded', () => {
  const sb = sample();
  assert.deepEqual(decodeSuperblock(encodeSuperblock(sb), 'm', MEMBER), sb);
});

test('the checksum is md calc_sb_1_csum: folded sum of LE words with sb_csum as zero', () => {
  const b = encodeSuperblock(sample());
  let sum = 0n;
  for (let off = 0; off < 256 + 3 * 2 - 2; off += 4) if (off !== 216) sum += BigInt(b.readUInt32LE(off));
  sum += BigInt(b.readUInt16LE(260));
  assert.equal(b.readUInt32LE(216), Number((sum & 0xffffffffn) + (sum >> 32n)));
  assert.equal(superblockChecksum(b, 3), b.readUInt32LE(216));
});

test('wrong magic is refused naming the member and both magics', () => {
  const b = encodeSuperblock(sample());
  b.writeUInt32LE(0x12345678, 0);
  expectBadMeta(() => decodeSuperblock(b, '/disks/a.img', MEMBER), /^member \/disks\/a\.img: no md superblock: expected magic 0xa92b4efc, found 0x12345678$/);
});

test('a flipped byte is refused as a checksum mismatch', () => {
  const b = encodeSuperblock(sample());
  b[40] = (b[40] ?? 0) ^ 0x55;
  expectBadMeta(() => decodeSuperblock(b, 'm', MEMBER), /superblock checksum mismatch: stored 0x[0-9a-f]+, computed 0x[0-9a-f]+/);
});

test('major_version other than 1 is refused', () => {
  const b = encodeSuperblock(sample());
  b.writeUInt32LE(0, 4);
  expectBadMeta(() => decodeSuperblock(b, 'm', MEMBER), /expected superblock major_version 1, found 0/);
});

test('a member shorter than data_offset + data_size is refused as truncated', () => {
  expectBadMeta(() => decodeSuperblock(encodeSuperblock(sample()), 'm', MEMBER - 4096), /truncated: expected at least 67108864 bytes/);
});

test('a member too small to hold a superblock is refused as truncated', async () => {
  const dev = new MemoryDevice(6000);
  await assert.rejects(readSuperblock(dev, 'tiny'), (err: unknown) => err instanceof MdError && err.code === 'EBADMETA' && /^member tiny: truncated/.test(err.message));
});

test('unknown feature bits are refused rather than misread', () => {
  const sb = sample();
  sb.featureMap = 1 | 0x40;
  expectBadMeta(() => decodeSuperblock(encodeSuperblock(sb), 'm', MEMBER), /unsupported superblock features 0x40/);
});

test('a blank member (all zeroes) reads as no md superblock', async () => {
  const dev = new MemoryDevice(MEMBER);
  await assert.rejects(readSuperblock(dev, 'blank'), /member blank: no md superblock: expected magic 0xa92b4efc, found 0x0/);
  assert.equal(SUPER_OFFSET_BYTES, 4096);
});

test('names longer than 32 bytes are rejected at encode', () => {
  const sb = sample();
  sb.setName = 'x'.repeat(33);
  assert.throws(() => encodeSuperblock(sb), (e: unknown) => e instanceof MdError && e.code === 'EINVAL');
});

test('u64 fields out of range are refused at encode with EINVAL naming the field, not a RangeError', () => {
  const cases: Array<[Partial<Superblock>, RegExp]> = [
    [{ events: 2n ** 64n }, /^superblock: expected events between 0 and 18446744073709551615, found 18446744073709551616$/],
    [{ events: -1n }, /^superblock: expected events between 0 and 18446744073709551615, found -1$/],
    [{ resyncOffset: 2n ** 64n }, /^superblock: expected resync_offset between 0 and 18446744073709551615, found 18446744073709551616$/],
    [{ size: 1.5 }, /^superblock: expected size to be a whole number of at most 9007199254740991, found 1.5$/],
    [{ dataSize: 2 ** 53 }, /^superblock: expected data_size to be a whole number of at most 9007199254740991, found 9007199254740992$/],
  ];
  for (const [fields, message] of cases) {
    assert.throws(() => encodeSuperblock({ ...sample(), ...fields }), (e: unknown) => {
      assert.ok(e instanceof MdError, `${JSON.stringify(fields, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v))}: ${String(e)}`);
      assert.equal(e.code, 'EINVAL');
      assert.match(e.message, message);
      return true;
    });
  }
  const top = { ...sample(), events: 2n ** 64n - 1n };
  assert.equal(decodeSuperblock(encodeSuperblock(top), 'm', MEMBER).events, 2n ** 64n - 1n, 'the largest events round-trip');
});
