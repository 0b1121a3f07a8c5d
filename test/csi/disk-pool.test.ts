// The disk pool on real directories: placement on distinct disks, preallocated member files,
// and RESOURCE_EXHAUSTED naming what was missing (disks or space). One disk is a small tmpfs so
// that "not enough space" is a real statfs answer.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DiskPool } from '../../src/csi/disk-pool.js';
import { CsiError } from '../../src/csi/errors.js';

const MiB = 1024 * 1024;
let root: string;
let disks: string[];

before(() => {
  root = mkdtempSync(path.join(os.tmpdir(), 'llraid-pool-'));
  disks = ['a', 'b', 'c'].map((d) => path.join(root, d));
  for (const d of disks) mkdirSync(d);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=16M', 'tmpfs', disks[2]!]);
});

after(async () => {
  execFileSync('umount', [disks[2]!]);
  await fs.rm(root, { recursive: true, force: true });
});

function exhausted(what: RegExp) {
  return (err: unknown) => err instanceof CsiError && err.code === 'RESOURCE_EXHAUSTED' && what.test(err.message);
}

test('members go to distinct disks, emptiest first', async () => {
  const pool = new DiskPool(disks);
  const placed = await pool.place(2, 4 * MiB, 'raid1');
  assert.equal(new Set(placed).size, 2);
  assert.ok(!placed.includes(disks[2]!), 'the 16 MiB tmpfs is the fullest disk and comes last');
});

test('more members than disks is RESOURCE_EXHAUSTED naming the disk count', async () => {
  const pool = new DiskPool(disks);
  await assert.rejects(pool.place(4, MiB, 'raid6 with 4 members'), exhausted(/needs 4 distinct disks, the pool has 3/));
});

test('too little space on enough disks is RESOURCE_EXHAUSTED naming the size and the free space', async () => {
  const pool = new DiskPool(disks);
  const huge = 1024 ** 4 * 1024; // 1 PiB
  await assert.rejects(pool.place(3, 64 * MiB, 'raid5'), exhausted(/needs 3 disks with 64 MiB free each, found 2/));
  await assert.rejects(pool.place(1, huge, 'raid0'), exhausted(/found 0/));
});

test('member files are preallocated and a full disk fails at allocation, leaving no file', async () => {
  const pool = new DiskPool(disks);
  const id = 'ab'.repeat(16);
  const file = pool.memberPath(disks[0]!, id, 0);
  await pool.allocate(file, 8 * MiB);
  const st = await fs.stat(file);
  assert.equal(st.size, 8 * MiB);
  assert.ok(st.blocks * 512 >= 8 * MiB, 'blocks are reserved, not a sparse file');
  assert.deepEqual(await pool.memberFiles(), [file]);
  await assert.rejects(pool.allocate(file, MiB), /EEXIST/);

  const tooBig = pool.memberPath(disks[2]!, id, 1);
  await assert.rejects(pool.allocate(tooBig, 32 * MiB), exhausted(/could not reserve 32 MiB/));
  await assert.rejects(fs.stat(tooBig), /ENOENT/);
  await fs.rm(file);
});

test('the pool is usable only when every disk is a writable directory', async () => {
  await new DiskPool(disks).check();
  await assert.rejects(new DiskPool([...disks, path.join(root, 'missing')]).check(), (err: unknown) =>
    err instanceof CsiError && err.code === 'FAILED_PRECONDITION' && err.message.includes('missing'),
  );
  await assert.rejects(new DiskPool([]).check(), /at least one disk/);
});

test('memberSpace is the free space of the n-th emptiest disk', async () => {
  const pool = new DiskPool(disks);
  const third = await pool.memberSpace(3);
  assert.ok(third <= 16 * MiB && third > 0);
  assert.equal(await pool.memberSpace(4), 0);
});
