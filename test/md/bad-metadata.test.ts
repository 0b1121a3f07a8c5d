// Bad member metadata at assembly: each case is refused with a typed error that names the member
// and says what was expected and found, and no member file changes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { openSync, writeSync, closeSync, truncateSync, readSync } from 'node:fs';
import { assembleArray, createArray, MdError } from '../../src/md/index.js';
import { fileHash, memberFiles, pattern, tempDir } from './array-fixtures.js';

const MEMBER = 16 << 20;

async function makeArray(dir: string, prefix = 'm'): Promise<string[]> {
  const paths = memberFiles(dir, 2, MEMBER, prefix);
  const a = await createArray({ name: `vol-${prefix}`, level: 1, members: paths });
  await a.write(0, pattern(1, 65536));
  await a.stop();
  return paths;
}

function patchByte(path: string, offset: number, value: number): void {
  const fd = openSync(path, 'r+');
  try {
    writeSync(fd, Buffer.from([value]), 0, 1, offset);
  } finally {
    closeSync(fd);
  }
}

function byteAt(path: string, offset: number): number {
  const fd = openSync(path, 'r');
  try {
    const b = Buffer.alloc(1);
    readSync(fd, b, 0, 1, offset);
    return b[0] ?? 0;
  } finally {
    closeSync(fd);
  }
}

async function expectRefused(paths: string[], code: string, message: RegExp): Promise<void> {
  const before = paths.map(fileHash);
  await assert.rejects(assembleArray({ members: paths }), (e: unknown) => {
    assert.ok(e instanceof MdError, `expected MdError, found ${String(e)}`);
    assert.equal(e.code, code);
    assert.match(e.message, message);
    return true;
  });
  assert.deepEqual(paths.map(fileHash), before, 'a refused assembly changes no member');
}

test('a member with a wrong superblock magic is refused', async (t) => {
  const paths = await makeArray(tempDir(t));
  patchByte(paths[1] as string, 4096, 0x00);
  await expectRefused(paths, 'EBADMETA', new RegExp(`^member ${paths[1]}: no md superblock: expected magic 0xa92b4efc, found 0xa92b4e00; use force to assemble without this member$`));
});

test('a member whose superblock fails its checksum is refused', async (t) => {
  const paths = await makeArray(tempDir(t));
  patchByte(paths[0] as string, 4096 + 40, byteAt(paths[0] as string, 4096 + 40) ^ 0x20);
  await expectRefused(paths, 'EBADMETA', new RegExp(`^member ${paths[0]}: superblock checksum mismatch: stored 0x[0-9a-f]+, computed 0x[0-9a-f]+; use force to assemble without this member$`));
});

test('a member of another array is refused naming both UUIDs', async (t) => {
  const dir = tempDir(t);
  const a = await makeArray(dir, 'a');
  const b = await makeArray(dir, 'b');
  await expectRefused([a[0] as string, b[1] as string], 'EUUID',
    new RegExp(`^member ${b[1]}: belongs to array [0-9a-f:]{35}, expected [0-9a-f:]{35}$`));
});

test('a truncated member is refused', async (t) => {
  const paths = await makeArray(tempDir(t));
  truncateSync(paths[1] as string, MEMBER - 1024 * 1024);
  await expectRefused(paths, 'EBADMETA', new RegExp(`^member ${paths[1]}: truncated: expected at least ${MEMBER} bytes \\(data_offset \\+ data_size\\), found ${MEMBER - 1024 * 1024}; use force to assemble without this member$`));
});

test('a member truncated inside its superblock is refused', async (t) => {
  const paths = await makeArray(tempDir(t));
  truncateSync(paths[0] as string, 6000);
  await expectRefused(paths, 'EBADMETA', new RegExp(`^member ${paths[0]}: truncated: expected at least 8192 bytes for a 1.2 superblock, found 6000; use force to assemble without this member$`));
});

test('creating over a member that carries an md superblock needs force', async (t) => {
  const dir = tempDir(t);
  const paths = await makeArray(dir);
  const before = paths.map(fileHash);
  await assert.rejects(createArray({ name: 'again', level: 1, members: paths }), (e: unknown) =>
    e instanceof MdError && e.code === 'EEXIST' && e.message.startsWith(`member ${paths[0]}: already carries an md superblock of array`));
  assert.deepEqual(paths.map(fileHash), before);
  const a = await createArray({ name: 'again', level: 1, members: paths, force: true });
  await a.stop();
});

test('bad create arguments are refused before any member is touched', async (t) => {
  const paths = memberFiles(tempDir(t), 2, MEMBER);
  const before = paths.map(fileHash);
  await assert.rejects(createArray({ name: '', level: 1, members: paths }), /array name must be 1 to 32 bytes, found 0/);
  await assert.rejects(createArray({ name: 'x', level: 1, members: [paths[0] as string] }), /raid1: expected at least 2 members, found 1/);
  await assert.rejects(createArray({ name: 'x', level: 0, members: paths, bitmap: 'llbitmap' }), /raid0: has no redundancy to resync/);
  await assert.rejects(createArray({ name: 'x', level: 1, members: [paths[0] as string, paths[0] as string] }), /given more than once/);
  const tiny = memberFiles(tempDir(t), 2, 1 << 20, 't');
  await assert.rejects(createArray({ name: 'x', level: 1, members: tiny }), (e: unknown) => e instanceof MdError && e.code === 'ENOSPC');
  assert.deepEqual(paths.map(fileHash), before);
});
