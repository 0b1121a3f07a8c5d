// Byte compatibility with Linux md metadata 1.2, judged by Debian's real `mdadm --examine`:
// members written by llraid must print the UUID, name, level, devices, events, data offset and
// role that llraid wrote, with a correct checksum.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileDevice } from '../../src/block/file-device.js';
import { RESYNC_NONE, ROLE_FAULTY, writeSuperblock, type Superblock } from '../../src/md/superblock.js';
import { createArray, formatUuid } from '../../src/md/index.js';

const MEMBER = 64 << 20;

function examine(path: string): string {
  return execFileSync('mdadm', ['--examine', path], { encoding: 'utf8' });
}

function field(out: string, name: string): string {
  const m = new RegExp(`^\\s*${name} : (.*)$`, 'm').exec(out);
  assert.ok(m, `mdadm --examine printed no "${name}" line:\n${out}`);
  return (m[1] ?? '').trim();
}

// mdadm's load_super1 reads the bitmap superblock at super + bitmap_offset and, when its magic or
// UUID do not match, clears the bitmap feature bit in memory, so the checksum it recomputes is
// off by one; and with chunksize 0 Debian's mdadm 4.2 dies of SIGFPE sizing the bitmap. So a
// member with FEATURE_BITMAP_OFFSET needs a real llbitmap header (bitmap_super_t fields).
function bitmapHeader(sb: Superblock): Buffer {
  const b = Buffer.alloc(256);
  b.writeUInt32LE(0x6d746962, 0);
  b.writeUInt32LE(6, 4);
  sb.setUuid.copy(b, 8);
  b.writeBigUInt64LE(sb.events, 24);
  b.writeBigUInt64LE(sb.events, 32);
  b.writeBigUInt64LE(BigInt(sb.size), 40);
  b.writeUInt32LE(128, 52);
  b.writeUInt32LE(30, 56);
  b.writeUInt32LE(sb.dataOffset - sb.superOffset - sb.bitmapOffset, 64);
  return b;
}

async function writeMember(path: string, sb: Superblock): Promise<void> {
  const dev = await FileDevice.open(path, { create: { size: MEMBER } });
  try {
    await writeSuperblock(dev, sb);
    if (sb.featureMap & 1) await dev.write((sb.superOffset + sb.bitmapOffset) * 512, bitmapHeader(sb));
  } finally {
    await dev.close();
  }
}

function base(devNumber: number, over: Partial<Superblock>): Superblock {
  return {
    featureMap: 0, setUuid: Buffer.from('0123456789abcdeffedcba9876543210', 'hex'), setName: 'pvc-mdadm',
    ctime: 1_700_000_000, level: 1, layout: 0, size: (MEMBER >> 9) - 2048, chunkSize: 0, raidDisks: 2,
    bitmapOffset: 0, dataOffset: 2048, dataSize: (MEMBER >> 9) - 2048, superOffset: 8, recoveryOffset: 0,
    devNumber, cntCorrectedRead: 0, deviceUuid: Buffer.alloc(16, devNumber + 0xa0), devflags: 0, bblogShift: 0, bblogSize: 0, bblogOffset: 0,
    utime: 1_700_000_100, events: 77n, resyncOffset: RESYNC_NONE, devRoles: [0, 1], ...over,
  };
}

test('mdadm --examine reads a raid1 member with an internal (version 6) bitmap', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'llraid-sb-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'a.img');
  await writeMember(path, base(1, { featureMap: 1, bitmapOffset: 8 }));
  const out = examine(path);
  assert.equal(field(out, 'Magic'), 'a92b4efc');
  assert.equal(field(out, 'Version'), '1.2');
  assert.equal(field(out, 'Array UUID'), '01234567:89abcdef:fedcba98:76543210');
  assert.equal(field(out, 'Name'), 'pvc-mdadm');
  assert.equal(field(out, 'Raid Level'), 'raid1');
  assert.equal(field(out, 'Raid Devices'), '2');
  assert.equal(field(out, 'Events'), '77');
  assert.equal(field(out, 'Data Offset'), '2048 sectors');
  assert.equal(field(out, 'Super Offset'), '8 sectors');
  assert.equal(field(out, 'Internal Bitmap'), '8 sectors from superblock');
  assert.equal(field(out, 'Device Role'), 'Active device 1');
  assert.match(field(out, 'Checksum'), /^[0-9a-f]+ - correct$/);
  assert.equal(field(out, 'State'), 'clean');
  assert.match(field(out, 'Array State'), /^AA /);
});

test('mdadm --examine reads raid10 near=2 over three members with a faulty slot', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'llraid-sb-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'b.img');
  await writeMember(path, base(0, {
    level: 10, layout: 0x102, chunkSize: 128, raidDisks: 3, devRoles: [0, 1, ROLE_FAULTY], events: 123456789012n, resyncOffset: 0n,
  }));
  const out = examine(path);
  assert.equal(field(out, 'Raid Level'), 'raid10');
  assert.equal(field(out, 'Raid Devices'), '3');
  assert.equal(field(out, 'Layout'), 'near=2');
  assert.equal(field(out, 'Chunk Size'), '64K');
  assert.equal(field(out, 'Events'), '123456789012');
  assert.equal(field(out, 'State'), 'active');
  assert.equal(field(out, 'Device Role'), 'Active device 0');
  assert.match(field(out, 'Array State'), /^AA\. /);
  assert.match(field(out, 'Checksum'), / - correct$/);
});

test('mdadm --examine reads a raid0 member', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'llraid-sb-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'c.img');
  await writeMember(path, base(2, { level: 0, chunkSize: 1024, raidDisks: 4, devRoles: [0, 1, 2, 3] }));
  const out = examine(path);
  assert.equal(field(out, 'Raid Level'), 'raid0');
  assert.equal(field(out, 'Raid Devices'), '4');
  assert.equal(field(out, 'Chunk Size'), '512K');
  assert.equal(field(out, 'Device Role'), 'Active device 2');
});

test('mdadm --examine reads the members createArray writes, before and after a member fails', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'llraid-sb-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const paths = [0, 1, 2].map((i) => join(dir, `r10-${i}.img`));
  for (const p of paths) await (await FileDevice.open(p, { create: { size: MEMBER } })).close();
  const a = await createArray({ name: 'pvc-0042', level: 10, members: paths, chunkSize: 128 * 1024 });
  const uuid = formatUuid(a.uuid);
  await a.fail(paths[2] as string);
  const events = a.status().events;
  await a.stop();
  const out = examine(paths[1] as string);
  assert.equal(field(out, 'Array UUID'), uuid);
  assert.equal(field(out, 'Name'), 'pvc-0042');
  assert.equal(field(out, 'Raid Level'), 'raid10');
  assert.equal(field(out, 'Raid Devices'), '3');
  assert.equal(field(out, 'Layout'), 'near=2');
  assert.equal(field(out, 'Chunk Size'), '128K');
  assert.equal(field(out, 'Events'), (BigInt(events) + 1n).toString(), 'the clean stop is one more superblock update');
  assert.equal(field(out, 'Data Offset'), '2048 sectors');
  assert.equal(field(out, 'Internal Bitmap'), '8 sectors from superblock');
  assert.equal(field(out, 'Device Role'), 'Active device 1');
  assert.equal(field(out, 'State'), 'clean');
  assert.match(field(out, 'Array State'), /^AA\. /, 'the failed member is recorded as missing');
  assert.match(field(out, 'Checksum'), / - correct$/);
  assert.match(field(out, 'Array Size'), /^\d+ KiB/);
  const sizeKiB = Number(/^(\d+) KiB/.exec(field(out, 'Array Size'))?.[1]);
  assert.equal(sizeKiB * 1024, a.size);
});
