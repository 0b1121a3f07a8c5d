// Members are opened by one process at a time: while an engine serves an array, every other
// writer (an offline assemble, check, repair, fail, a second serve) is refused with an error
// naming the engine, and leaves the members' metadata exactly as it was. Real processes, real
// files, the built CLI.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildCli, runCli, type CliResult } from '../support/cli.js';
import { startServe } from '../nbd/helpers.js';


const llraid = (...args: string[]): Promise<CliResult> => runCli(args);

/** The metadata area of a member (superblock at 4 KiB, llbitmap after it): 1 MiB. */
async function metadata(path: string): Promise<Buffer> {
  return (await readFile(path)).subarray(0, 1024 * 1024);
}

/** Starts `llraid serve`; resolves once it serves (its `serving` event). */
async function startEngine(args: string[]): Promise<ChildProcess> {
  return (await startServe(args)).child;
}

async function stopEngine(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill(signal);
  await exited;
}

describe('exclusive members', () => {
  let dir: string;
  before(async () => {
    await buildCli();
    dir = await mkdtemp(join(tmpdir(), 'llraid-excl-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  describe('while an engine serves the array', () => {
    let a: string;
    let b: string;
    let engine: ChildProcess;
    let meta: Buffer[];
    before(async () => {
      [a, b] = [join(dir, 'a.img'), join(dir, 'b.img')];
      assert.equal((await llraid('create', '--level', '1', '--name', 'busy', '--size', '32M', a, b)).code, 0);
      engine = await startEngine(['--socket', join(dir, 'busy.sock'), '--control', join(dir, 'busy.ctl'), a, b]);
      meta = [await metadata(a), await metadata(b)];
    });
    after(async () => {
      await stopEngine(engine);
    });

    for (const cmd of [['assemble'], ['check'], ['repair'], ['sync'], ['fail', 'B'], ['grow', '--size', '48M']]) {
      it(`refuses an offline ${cmd[0]}, naming the engine, and writes nothing`, async () => {
        const args = cmd.map((x) => (x === 'B' ? b : x));
        const r = await llraid(...args, a, b);
        assert.notEqual(r.code, 0, r.stdout);
        assert.match(r.stderr, new RegExp(`in use by pid ${engine.pid} \\(.*serve`));
        assert.match(r.stderr, /EBUSY/);
        assert.ok((await metadata(a)).equals(meta[0]!), 'member a metadata changed');
        assert.ok((await metadata(b)).equals(meta[1]!), 'member b metadata changed');
      });
    }

    it('refuses a second serve on the same members, on another socket', async () => {
      const r = await llraid('serve', '--socket', join(dir, 'other.sock'), a, b);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, new RegExp(`in use by pid ${engine.pid}`));
      assert.ok((await metadata(a)).equals(meta[0]!));
    });

    it('refuses the same member under another path (./, a symlink)', async () => {
      const link = join(dir, 'link-to-a.img');
      await symlink(a, link);
      const r = await llraid('assemble', `${dir}/./a.img`, link);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /is the same file as member/);
    });

    it('still lets examine read a live member', async () => {
      const r = await llraid('examine', a);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /busy/);
    });
  });

  it('a second serve on a socket in use fails before it opens any member', async () => {
    const [a, b, c, d] = ['sa', 'sb', 'sc', 'sd'].map((n) => join(dir, `${n}.img`)) as [string, string, string, string];
    assert.equal((await llraid('create', '--level', '1', '--name', 's1', '--size', '16M', a, b)).code, 0);
    assert.equal((await llraid('create', '--level', '1', '--name', 's2', '--size', '16M', c, d)).code, 0);
    const sock = join(dir, 'shared.sock');
    const engine = await startEngine(['--socket', sock, a, b]);
    try {
      const before = [await metadata(c), await metadata(d)];
      const r = await llraid('serve', '--socket', sock, c, d);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /found a live socket/);
      // Not even a clean assemble and stop (events +2) happened on the other array.
      assert.ok((await metadata(c)).equals(before[0]!), 'member c metadata changed');
      assert.ok((await metadata(d)).equals(before[1]!), 'member d metadata changed');
    } finally {
      await stopEngine(engine);
    }
  });

  it('a killed engine leaves no lock behind: the members assemble and resync', async () => {
    const [a, b] = [join(dir, 'ka.img'), join(dir, 'kb.img')];
    assert.equal((await llraid('create', '--level', '1', '--name', 'killed', '--size', '16M', a, b)).code, 0);
    const engine = await startEngine(['--socket', join(dir, 'killed.sock'), a, b]);
    await stopEngine(engine, 'SIGKILL');
    const r = await llraid('check', a, b, '--json');
    assert.equal(r.code, 0, r.stderr);
    assert.equal((JSON.parse(r.stdout) as { mismatchCount: number }).mismatchCount, 0);
  });

  it('create refuses one file given twice under two names', async () => {
    const x = join(dir, 'x.img');
    const r = await llraid('create', '--level', '1', '--name', 'twice', '--size', '16M', x, `${dir}/./x.img`);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /is the same file as member .*x\.img; each member must be a distinct file or device/);
  });
});
