// What `llraid status` says about each member of a raid1 whose membership changed — failed,
// spare, stale — through the built CLI on real member files: the running array's table (the
// output of fail/add, and `status --control` of a served array) and the offline view read from
// the members, text and JSON. Each state is said once, by the word for it.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { buildCli } from '../support/cli.js';
import { startServe } from '../nbd/helpers.js';
import { editSuperblock } from '../support/superblock-edit.js';

const run = promisify(execFile);

let cli: string;
async function llraid(...args: string[]): Promise<string> {
  try {
    return (await run(process.execPath, [cli, ...args])).stdout;
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    throw new Error(`llraid ${args.join(' ')}: exit ${e.code}\n${e.stdout}${e.stderr}`, { cause: err });
  }
}

interface OfflineMember { name: string; uuid: string; role: number | null; state: string; stale: boolean; reason: string | null }

describe('llraid status: member states', () => {
  let dir: string;
  before(async () => {
    cli = await buildCli();
    dir = await mkdtemp(join(tmpdir(), 'llraid-status-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('a failed member reads "faulty" once, with no role and why, and the state says degraded once', async () => {
    const [a, b] = [join(dir, 'fa.img'), join(dir, 'fb.img')];
    await llraid('create', '-l', '1', '-N', 'st1', '-z', '16M', a, b);
    const failed = await llraid('fail', b, a, b);
    assert.match(failed, /^st1: raid1 15 MiB \(15728640 bytes\), state degraded\n/);
    assert.doesNotMatch(failed, /degraded, degraded|spare/);
    assert.match(failed, new RegExp(`\\n {2}role 0 {2}in_sync {4}${a}\\n {2}- {7}faulty {5}${b} {2}\\(failed by request\\)\\n {2}role 1 {2}missing\\n`));

    const offline = await llraid('status', a, b);
    assert.match(offline, new RegExp(`\\n {2}role 0 {2}in_sync {4}events 5 {6}${a}\\n {2}- {7}faulty {5}events 3 {6}${b} {2}\\(the array records it failed or removed\\)\\n`));
    const json = JSON.parse(await llraid('status', '--json', a, b)) as { members: OfflineMember[] };
    assert.deepEqual(json.members.map(({ role, state, stale }) => ({ role, state, stale })), [
      { role: 0, state: 'in_sync', stale: false },
      { role: null, state: 'faulty', stale: false },
    ]);
  });

  it('a spare is "-  spare" and status and examine read it (it carries no bitmap)', async () => {
    const [a, b, c] = [join(dir, 'sa.img'), join(dir, 'sb.img'), join(dir, 'sc.img')];
    await llraid('create', '-l', '1', '-N', 'st2', '-z', '16M', a, b);
    await writeFile(c, '');
    await truncate(c, 16 * 1024 * 1024);
    const added = await llraid('add', c, a, b);
    assert.match(added, new RegExp(`\\n {2}- {7}spare {6}${c}\\n`));
    assert.doesNotMatch(added, /spare {3}spare/);

    // c first: equally fresh, but the bitmap is read from a member that keeps it.
    const offline = await llraid('status', c, a, b);
    assert.match(offline, new RegExp(`\\n {2}role 0 {2}in_sync {4}events \\d+ +${a}\\n {2}role 1 {2}in_sync {4}events \\d+ +${b}\\n {2}- {7}spare {6}events \\d+ +${c}\\n`));
    assert.match(offline, new RegExp(`bitmap: llbitmap, 240 chunks of 64 KiB \\(from ${a}\\)`));
    const examined = await llraid('examine', c);
    assert.match(examined, /Device Role : spare/);
    assert.match(examined, /llbitmap: not kept on this member \(a spare: the bitmap is kept on in-sync members only\)/);
    const json = JSON.parse(await llraid('examine', '--json', c)) as { bitmap: unknown; bitmapNote: string };
    assert.equal(json.bitmap, null);
    assert.match(json.bitmapNote, /^a spare/);
  });

  it('a member that missed superblock updates is stale, keeps its role, and says why; one behind is in sync', async () => {
    const [a, b] = [join(dir, 'la.img'), join(dir, 'lb.img')];
    await llraid('create', '-l', '1', '-N', 'st3', '-z', '16M', a, b);
    // As if b had missed the last two superblock updates (a power cut, say): md's margin is one.
    await editSuperblock(a, (sb) => ({ ...sb, events: 7n }));
    await editSuperblock(b, (sb) => ({ ...sb, events: 5n }));
    const offline = await llraid('status', a, b);
    assert.match(offline, new RegExp(`\\n {2}role 0 {2}in_sync {4}events 7 {6}${a}\\n {2}role 1 {2}stale {6}events 5 {6}${b} {2}\\(events lag the array's 7\\)\\n`));
    const json = JSON.parse(await llraid('status', '--json', a, b)) as { members: OfflineMember[] };
    assert.deepEqual(json.members[1], { name: b, uuid: json.members[0]!.uuid, events: '5', role: 1, state: 'stale', stale: true, reason: "events lag the array's 7" } as unknown);
    // One behind is within the margin: assembly takes it, and so does status.
    await editSuperblock(b, (sb) => ({ ...sb, events: 6n }));
    assert.match(await llraid('status', a, b), new RegExp(`\\n {2}role 1 {2}in_sync {4}events 6 {6}${b}\\n`));
  });

  it('status --control of a served array after fail --control reads the same', async (t) => {
    const [a, b] = [join(dir, 'ca.img'), join(dir, 'cb.img')];
    await llraid('create', '-l', '1', '-N', 'st4', '-z', '16M', a, b);
    const control = join(dir, 'st4.sock');
    const serve = await startServe(['--socket', join(dir, 'st4-nbd.sock'), '--control', control, '--quiet', a, b]);
    t.after(() => serve.stop('SIGKILL'));
    await llraid('fail', b, '--control', control);
    const status = await llraid('status', '--control', control);
    assert.match(status, /^st4: raid1 15 MiB \(15728640 bytes\), state degraded\n/);
    assert.match(status, new RegExp(`\\n {2}- {7}faulty {5}${b} {2}\\(failed by request\\)\\n`));
    assert.doesNotMatch(status, /degraded, degraded|spare/);
    const json = JSON.parse(await llraid('status', '--control', control, '--json')) as { state: string; degraded: boolean; members: { name: string; role: number | null; state: string; failure: string | null }[] };
    assert.equal(json.state, 'degraded');
    assert.deepEqual(json.members.find((m) => m.name === b), { name: b, role: null, state: 'faulty', devNumber: 1, recoveryOffset: 0, failure: 'failed by request', errors: 0, writeMostly: false, remote: false, awaited: false, recovery: null } as unknown);
    await llraid('stop', '--control', control);
  });
});
