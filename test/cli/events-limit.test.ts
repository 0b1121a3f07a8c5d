// Superblock `events` near the top of their u64 field, through the built `llraid` on real member
// files whose superblocks the test rewrites (checksum recomputed by the codec): the CLI reads
// them, refuses an update that would pass 2^64-1 with a sentence naming the array and members
// (not a bare RangeError) and changes nothing, keeps the last value for a clean stop, and
// decides re-add recovery exactly even where events no longer fit a double.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { buildCli, runCli, type CliResult } from '../support/cli.js';
import { startServe } from '../nbd/helpers.js';
import { editSuperblock } from '../support/superblock-edit.js';

const run = promisify(execFile);
const U64_MAX = 2n ** 64n - 1n;

const llraid = (...args: string[]): Promise<CliResult> => runCli(args);

/** Rewrites the events of a member's superblock in place, checksum included. */
function setEvents(path: string, events: bigint): Promise<void> {
  return editSuperblock(path, (sb) => ({ ...sb, events }));
}

async function eventsOf(path: string): Promise<bigint> {
  const ex = await llraid('examine', '--json', path);
  assert.equal(ex.code, 0, ex.stderr);
  return BigInt((JSON.parse(ex.stdout) as { superblock: { events: string } }).superblock.events);
}

const escape = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

describe('llraid with superblock events near 2^64', () => {
  let dir: string;
  let n = 0;
  before(async () => {
    await buildCli();
    dir = await mkdtemp(join(tmpdir(), 'llraid-events-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  /** A fresh raid1 of two members, both with `events`. */
  async function raid1(events: bigint): Promise<[string, string]> {
    const m = [join(dir, `e${n}a.img`), join(dir, `e${n}b.img`)] as [string, string];
    const name = `ev${n++}`;
    const created = await llraid('create', '-l', '1', '-N', name, '-z', '16M', ...m);
    assert.equal(created.code, 0, created.stderr);
    for (const p of m) await setEvents(p, events);
    return m;
  }

  it('status and examine print events of 2^64-1 as they are', async () => {
    const [a, b] = await raid1(U64_MAX);
    const st = await llraid('status', a, b);
    assert.equal(st.code, 0, st.stderr);
    assert.match(st.stdout, /events 18446744073709551615 /);
    assert.match(st.stdout, /stopped cleanly/);
    assert.equal(await eventsOf(a), U64_MAX);
  });

  for (const events of [U64_MAX, U64_MAX - 1n]) {
    it(`assembling at events ${events} is refused with EOVERFLOW naming the array and members, and no byte changes`, async () => {
      const [a, b] = await raid1(events);
      const before = [await readFile(a), await readFile(b)];
      const r = await llraid('assemble', a, b);
      assert.equal(r.code, 1, r.stdout);
      assert.doesNotMatch(r.stderr, /RangeError|out of range|internal error|\n\s+at /);
      assert.match(r.stderr, new RegExp(`^llraid: array ev\\d+: cannot record this change in the superblocks: events would go from ${events} ` +
        `\\(members ${escape(a)}, ${escape(b)}\\) to ${events + 1n}, expected at most ${U64_MAX - 1n} \\(the u64 events field ends at ${U64_MAX}, ` +
        'and its last value is kept for a clean stop\\) \\(EOVERFLOW\\)\\n$'));
      assert.ok(before[0]!.equals(await readFile(a)) && before[1]!.equals(await readFile(b)), 'members unchanged');
    });
  }

  it('at events 2^64-3 the array runs, a fail is refused before it changes anything, and the stop takes the last value clean', async () => {
    const [a, b] = await raid1(U64_MAX - 2n);
    // Assembly takes 2^64-2; failing b would need 2^64-1, which only a clean stop may take.
    const r = await llraid('fail', b, a, b);
    assert.equal(r.code, 1, r.stdout);
    assert.match(r.stderr, /cannot record this change in the superblocks: events would go from 18446744073709551614 .*\(EOVERFLOW\)\n$/);
    assert.equal(await eventsOf(a), U64_MAX);
    assert.equal(await eventsOf(b), U64_MAX, 'b was not failed: both members carry the clean stop');
    const st = JSON.parse((await llraid('status', '--json', a, b)).stdout) as { clean: boolean; members: { stale: boolean }[] };
    assert.equal(st.clean, true, 'stopped cleanly, nothing owed a resync');
    assert.deepEqual(st.members.map((m) => m.stale), [false, false]);
  });

  it('re-add after the role was refilled is a full recovery even with events beyond 2^53', async (t) => {
    const [a, b] = await raid1(2n ** 60n);
    const c = join(dir, 'refill-c.img');
    const control = join(dir, 'refill.sock');
    const serve = await startServe(['--socket', join(dir, 'refill-nbd.sock'), '--control', control, '--quiet', a, b]);
    t.after(() => serve.stop('SIGKILL'));
    const ok = async (...args: string[]): Promise<string> => {
      const r = await llraid(...args, '--control', control);
      assert.equal(r.code, 0, r.stderr);
      return r.stdout;
    };
    await ok('fail', b);
    // c takes b's role and is rebuilt; then c fails too. b missed everything c got meanwhile,
    // and the bitmap stopped tracking it for b once c was in sync: only a full recovery is right.
    await run('truncate', ['-s', '16M', c]);
    await ok('add', c);
    const cState = async (): Promise<string | undefined> =>
      (JSON.parse(await ok('status', '--json')) as { members: { name: string; state: string }[] }).members.find((m) => m.name === c)?.state;
    for (let i = 0; i < 100 && (await cState()) !== 'in_sync'; i++) await new Promise((r) => setTimeout(r, 100));
    assert.equal(await cState(), 'in_sync', 'c was rebuilt');
    await ok('fail', c);
    const readd = JSON.parse(await ok('re-add', b, '--json')) as { recovery: string };
    assert.equal(readd.recovery, 'full');
    await ok('stop');
    const code = await new Promise((resolve) => (serve.child.exitCode !== null ? resolve(serve.child.exitCode) : serve.child.once('exit', resolve)));
    assert.equal(code, 0, serve.stderr());
  });
});
