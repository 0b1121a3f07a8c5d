// The `llraid` command end to end, as a user runs it: the built CLI on real member files.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildCli, runCli, type CliResult } from '../support/cli.js';


const llraid = (...args: string[]): Promise<CliResult> => runCli(args);

async function patch(path: string, offset: number, bytes: Buffer): Promise<void> {
  const fh = await open(path, 'r+');
  await fh.write(bytes, 0, bytes.length, offset);
  await fh.close();
}

describe('llraid CLI', () => {
  let dir: string;
  before(async () => {
    await buildCli();
    dir = await mkdtemp(join(tmpdir(), 'llraid-cli-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('creates a raid1 on new sparse files and examines a member read-only', async () => {
    const [a, b] = [join(dir, 'a.img'), join(dir, 'b.img')];
    const created = await llraid('create', '--level', '1', '--name', 'vol1', '--size', '64M', a, b);
    assert.equal(created.code, 0, created.stderr);
    assert.match(created.stdout, /created vol1: raid1/);
    const ex = await llraid('examine', '--json', a);
    assert.equal(ex.code, 0, ex.stderr);
    const report = JSON.parse(ex.stdout) as { superblock: { setName: string; raidDisks: number }; bitmap: { bits: string; metadata: string } };
    assert.equal(report.superblock.setName, 'vol1');
    assert.equal(report.superblock.raidDisks, 2);
    assert.match(report.bitmap.bits, /^unwritten \d+\nclean 0\ndirty 0\nneed sync 0\nsyncing 0\nneed sync unwritten 0\nsyncing unwritten 0\nclean unwritten 0\n$/);
    assert.match(report.bitmap.metadata, /^chunksize 128\nchunkshift 7\nchunks \d+\noffset 8\ndaemon_sleep 30\n$/);
    const st = await llraid('status', a, b);
    assert.equal(st.code, 0, st.stderr);
    assert.match(st.stdout, /stopped cleanly/);
  });

  it('fails a member, re-adds it with bitmap-guided recovery, and checks the mirrors', async () => {
    const [a, b] = [join(dir, 'fa.img'), join(dir, 'fb.img')];
    assert.equal((await llraid('create', '-l', '1', '-N', 'vol2', '-z', '32M', a, b)).code, 0);
    const failed = await llraid('fail', b, a, b, '--json');
    assert.equal(failed.code, 0, failed.stderr);
    const st = JSON.parse(failed.stdout) as { status: { degraded: boolean; members: { name: string; state: string }[] } };
    assert.equal(st.status.degraded, true);
    assert.equal(st.status.members.find((m) => m.name === b)?.state, 'faulty');
    // Assembling from a alone shows b is gone; re-adding b brings it back.
    const readd = await llraid('re-add', b, a);
    assert.equal(readd.code, 0, readd.stderr);
    assert.match(readd.stdout, /bitmap-guided recovery/);
    const check = await llraid('check', a, b, '--json');
    assert.equal(check.code, 0, check.stderr);
    assert.equal((JSON.parse(check.stdout) as { mismatchCount: number }).mismatchCount, 0);
  });

  it('check exits non-zero and repair fixes it when the mirrors differ', async () => {
    const [a, b] = [join(dir, 'ca.img'), join(dir, 'cb.img')];
    assert.equal((await llraid('create', '-l', '1', '-N', 'vol3', '-z', '16M', '--assume-clean', a, b)).code, 0);
    // Corrupt one copy's data area (data starts at 1 MiB) behind the array's back.
    await patch(b, 1024 * 1024 + 4096, Buffer.alloc(4096, 0x5a));
    const check = await llraid('check', a, b);
    assert.equal(check.code, 1);
    assert.match(check.stdout, /mismatch_cnt 8/);
    assert.equal((await llraid('repair', a, b)).code, 0);
    const again = await llraid('check', a, b);
    assert.equal(again.code, 0, again.stdout);
    assert.match(again.stdout, /mismatch_cnt 0/);
  });

  it('sync --proactive builds raid5 parity ahead of writes; raid1 refuses it with a clear error', async () => {
    const p5 = ['pa', 'pb', 'pc', 'pd'].map((n) => join(dir, `${n}.img`));
    assert.equal((await llraid('create', '-l', '5', '-N', 'par', '-z', '32M', ...p5)).code, 0);
    const synced = await llraid('sync', '--proactive', '--json', ...p5);
    assert.equal(synced.code, 0, synced.stderr);
    const out = JSON.parse(synced.stdout) as { summary: { mode: string; complete: boolean }; bitmap: { counts: Record<string, number> } };
    assert.equal(out.summary.complete, true);
    const ex = await llraid('examine', '--json', p5[0]!);
    const bits = (JSON.parse(ex.stdout) as { bitmap: { bits: string } }).bitmap.bits;
    assert.match(bits, /^unwritten 0\n/m);
    assert.match(bits, /^clean unwritten [1-9]\d*\n/m);
    const m = [join(dir, 'pm1.img'), join(dir, 'pm2.img')];
    assert.equal((await llraid('create', '-l', '1', '-N', 'mir', '-z', '16M', ...m)).code, 0);
    const refused = await llraid('sync', '--proactive', ...m);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /proactive sync builds parity: expected raid4\/5\/6, found raid1 \(ENOTSUP\)/);
    const plain = await llraid('sync', ...m);
    assert.equal(plain.code, 0, plain.stderr);
    assert.match(plain.stdout, /resync complete: 0 B synced/);
  });

  it('bad arguments are usage errors (exit 2) with a clear message', async () => {
    const r = await llraid('create', '--level', '7', '--name', 'x', join(dir, 'x.img'));
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--level: expected 0, 1, 10, 5 or 6, found "7"/);
    const s = await llraid('status');
    assert.equal(s.code, 2);
    assert.match(s.stderr, /expected either the member paths/);
    const z = await llraid('create', '-l', '1', '-N', 'x', '-z', 'lots', join(dir, 'y.img'));
    assert.equal(z.code, 2);
    assert.match(z.stderr, /--size: expected a positive size/);
  });

  it('bad metadata is a clear error that names the member and changes nothing', async () => {
    const [a, b] = [join(dir, 'ma.img'), join(dir, 'mb.img')];
    assert.equal((await llraid('create', '-l', '1', '-N', 'vol4', '-z', '16M', a, b)).code, 0);
    await patch(a, 4096, Buffer.from([0, 0, 0, 0])); // superblock magic
    const before = await (await import('node:fs/promises')).readFile(a);
    const r = await llraid('assemble', a, b);
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`member ${a.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: .*magic`));
    assert.match(r.stderr, /\(EBADMETA\)/);
    assert.ok(before.equals(await (await import('node:fs/promises')).readFile(a)), 'member unchanged');
  });

  it('members of different arrays are refused with EUUID', async () => {
    const [a, b, c, d] = ['ua', 'ub', 'uc', 'ud'].map((n) => join(dir, `${n}.img`)) as [string, string, string, string];
    assert.equal((await llraid('create', '-l', '1', '-N', 'one', '-z', '16M', a, b)).code, 0);
    assert.equal((await llraid('create', '-l', '1', '-N', 'two', '-z', '16M', c, d)).code, 0);
    const r = await llraid('assemble', a, c);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /belongs to array .*\(EUUID\)/);
  });
});
