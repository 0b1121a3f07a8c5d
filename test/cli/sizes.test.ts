// Sizes `llraid create --size` and `llraid grow --size` cannot honour, through the built CLI on
// real member files: sizes past what a JavaScript number holds exactly say what the largest is
// and why; a filesystem without the room (a small tmpfs, so that "free" is a real statfs answer)
// is ENOSPC naming the member file and the bytes needed and free; a file size limit (EFBIG) is
// a sentence too. Each refusal changes no member and leaves no file behind.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, statfs, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { buildCli, CLI, runCli, type CliResult } from '../support/cli.js';

const run = promisify(execFile);
const MiB = 1024 * 1024;

const llraid = (...args: string[]): Promise<CliResult> => runCli(args);

/**
 * What a refused offline grow may not change: each member's size and data area. (Assembling and
 * stopping the array around the request does write its superblocks and bitmap: events go up.)
 */
async function dataOf(paths: string[]): Promise<Buffer[]> {
  return Promise.all(paths.map(async (p) => (await readFile(p)).subarray(MiB)));
}

const escape = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const TOO_BIG = (text: string, bytes: string): RegExp => new RegExp(
  `^llraid: --size: expected at most 9007199254740991 bytes \\(8 PiB - 1: byte offsets are JavaScript numbers, exact up to 2\\^53 - 1\\), found "${text}" = ${bytes} bytes\\n$`,
);

describe('llraid create/grow --size: sizes that cannot be had', () => {
  let dir: string;
  let small: string;
  before(async () => {
    await buildCli();
    dir = await mkdtemp(join(tmpdir(), 'llraid-sizes-'));
    small = join(dir, 'small');
    await mkdir(small);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=48M', 'tmpfs', small]);
  });
  after(async () => {
    execFileSync('umount', [small]);
    await rm(dir, { recursive: true, force: true });
  });

  it('sizes past 2^53 - 1 bytes are usage errors saying the largest and why, for create and grow', async () => {
    const [a, b] = [join(dir, 'ba.img'), join(dir, 'bb.img')];
    for (const [text, bytes] of [['8P', '9007199254740992'], ['8E', '9223372036854775808'], ['9007199254740992', '9007199254740992']] as const) {
      const c = await llraid('create', '-l', '1', '-N', 'big', '-z', text, a, b);
      assert.equal(c.code, 2, c.stdout);
      assert.match(c.stderr, TOO_BIG(text, bytes));
      assert.ok(!existsSync(a) && !existsSync(b), 'no member file was made');
    }
    assert.equal((await llraid('create', '-l', '1', '-N', 'big', '-z', '16M', a, b)).code, 0);
    const before = await dataOf([a, b]);
    const g = await llraid('grow', '--size', '8P', a, b);
    assert.equal(g.code, 2, g.stdout);
    assert.match(g.stderr, TOO_BIG('8P', '9007199254740992'));
    // Representable, but data starts 1 MiB into each member: its end would be past 2^53 - 1.
    const g2 = await llraid('grow', '--size', '9007199254740991', a, b);
    assert.equal(g2.code, 1, g2.stdout);
    assert.match(g2.stderr, new RegExp(
      `^llraid: array big: grow: expected at most 9007199253692415 bytes per member, found 9007199254740991: member ${escape(a)} keeps its data ` +
      'from byte 1048576, and llraid addresses bytes up to 9007199254740991 \\(2\\^53 - 1, the largest whole number a JavaScript number holds exactly\\) \\(EINVAL\\)\\n$'));
    assert.deepEqual(await dataOf([a, b]), before, 'member sizes and data unchanged');
  });

  it('a grow below the current size names the size asked for, and create into a missing directory makes nothing', async () => {
    const [a, b] = [join(dir, 'sha.img'), join(dir, 'shb.img')];
    assert.equal((await llraid('create', '-l', '1', '-N', 'shrink', '-z', '16M', a, b)).code, 0);
    const g = await llraid('grow', '--size', '1K', a, b);
    assert.equal(g.code, 1, g.stdout);
    assert.match(g.stderr, /^llraid: array shrink: grow: expected at least the current 15728640 bytes per member \(shrinking is not supported\), found 1024 \(rounded down to 0\) \(EINVAL\)\n$/);
    const missing = join(dir, 'no-such-dir');
    const c = await llraid('create', '-l', '1', '-N', 'nodir', '-z', '16M', join(missing, 'x.img'), join(dir, 'y.img'));
    assert.equal(c.code, 2, c.stdout);
    assert.equal(c.stderr, `llraid: member ${join(missing, 'x.img')}: expected a directory ${missing} to create it in, found none\n`);
    assert.ok(!existsSync(join(dir, 'y.img')), 'no member file was made');
  });

  it('create on a filesystem without room for the members is ENOSPC naming them and the space, and makes no file', async () => {
    const [a, b] = [join(small, 'ca.img'), join(small, 'cb.img')];
    const r = await llraid('create', '-l', '1', '-N', 'full', '-z', '32M', a, b);
    assert.equal(r.code, 1, r.stdout);
    assert.match(r.stderr, new RegExp(
      `^llraid: member ${escape(a)}: 2 member files of 32 MiB \\(33554432 bytes\\) need 64 MiB \\(67108864 bytes\\) on the filesystem holding ` +
      `${escape(a)}, ${escape(b)}, found 48 MiB \\(50331648 bytes\\) free \\(ENOSPC\\)\\n$`));
    assert.ok(!existsSync(a) && !existsSync(b), 'no member file was made');
  });

  it('grow on a full filesystem is ENOSPC naming the member and the space, and the array stays as it was', async () => {
    const [a, b] = [join(small, 'ga.img'), join(small, 'gb.img')];
    assert.equal((await llraid('create', '-l', '1', '-N', 'grow', '-z', '16M', a, b)).code, 0);
    // Fill what is left but 1 MiB: the members are sparse, so even their own 15 MiB is not there.
    const filler = join(small, 'filler');
    const fs = await statfs(small);
    await writeFile(filler, Buffer.alloc(fs.bavail * fs.bsize - MiB));
    const before = await dataOf([a, b]);
    const r = await llraid('grow', '--size', '20M', a, b);
    assert.equal(r.code, 1, r.stdout);
    assert.match(r.stderr, new RegExp(
      `^llraid: member ${escape(a)}: growing array grow to 20971520 bytes per member needs \\d+ more bytes on the filesystem holding ` +
      `${escape(a)}, ${escape(b)} \\(to hold them fully written\\), found \\d+ bytes free \\(ENOSPC\\)\\n$`));
    const free = Number(/found (\d+) bytes free/.exec(r.stderr)![1]);
    assert.ok(free <= MiB, `the filesystem is all but full: ${free} bytes free`);
    assert.deepEqual(await dataOf([a, b]), before, 'member sizes and data unchanged');
    const st = JSON.parse((await llraid('status', '--json', a, b)).stdout) as { memberSize: number; clean: boolean };
    assert.equal(st.clean, true);
    assert.equal(st.memberSize, 15 * MiB, 'still the size it had');
    await rm(filler);
  });

  it('a file size limit (EFBIG) is a sentence naming the member file, and no file is left', async () => {
    const [a, b] = [join(dir, 'fa.img'), join(dir, 'fb.img')];
    // ulimit -f is in 1024-byte blocks: 2 MiB; Node ignores SIGXFSZ, so ftruncate says EFBIG.
    const r = await run('bash', ['-c', 'ulimit -f 2048; exec "$0" "$@"', process.execPath, CLI, 'create', '-l', '1', '-N', 'lim', '-z', '16M', a, b])
      .then(() => ({ code: 0, stderr: '' }), (e: { code: number; stderr: string }) => e);
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(
      `^llraid: member ${escape(a)}: cannot make a file of 16 MiB \\(16777216 bytes\\): larger than the filesystem's largest file ` +
      "or this process's file size limit \\(ulimit -f\\) \\(ENOSPC\\)\\n$"));
    assert.ok(!existsSync(a) && !existsSync(b), 'no member file was left');
  });

  it('members too small for one chunk: the message gives the size found, and the files made go again', async () => {
    const [a, b] = [join(dir, 'sa.img'), join(dir, 'sb.img')];
    const r = await llraid('create', '-l', '1', '-N', 'tiny', '-z', '4K', a, b);
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`^llraid: member ${escape(a)}: expected at least 1052672 bytes \\(data offset \\+ one chunk\\), found 4096 \\(ENOSPC\\)\\n$`));
    assert.ok(!existsSync(a) && !existsSync(b), 'no member file was left');
  });
});
