// `llraid serve --lease-ms`: an engine acknowledges writes only under its lease. Real processes:
// the built CLI serving a raid1 of two member files on a unix socket, llraid's NBD client as the
// volume's client, control requests on the engine's socket. Past the lease a write is held — not
// failed, not acknowledged — while reads go on; extending the lease lets it complete. Stopping
// (control stop or SIGTERM) or fencing the engine (another engine took the members with a higher
// epoch through the member service) fails it with EIO, and its bytes are on no member.

import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { buildCli, runCli } from '../support/cli.js';
import { tempDir } from '../support/temp-dir.js';
import { patternBytes, startServe, stoppedCleanly, type ServeProcess } from '../nbd/helpers.js';
import { NbdClientDevice } from '../../src/nbd/index.js';
import { controlRequest, EngineError } from '../../src/engine/control/client.js';
import { isBlockError } from '../../src/block/errors.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const DATA = 1 * MiB;

async function members(dir: string): Promise<[string, string]> {
  const [a, b] = [join(dir, 'a.img'), join(dir, 'b.img')];
  const r = await runCli(['create', '-l', '1', '-N', 'leased', '-z', '16M', a, b]);
  assert.equal(r.code, 0, r.stderr);
  return [a, b];
}

/** Whether `p` has settled; watched from now on. */
function watch(p: Promise<unknown>): { settled: () => boolean; outcome: Promise<unknown> } {
  let done = false;
  const outcome = p.then((v) => ((done = true), v), (err: unknown) => ((done = true), err));
  return { settled: () => done, outcome };
}

/** The engine on `a` and `b`, its control socket, and a client attached to its export. */
async function leasedEngine(t: TestContext, dir: string, files: string[], extra: string[] = []): Promise<{ serve: ServeProcess; control: string; client: NbdClientDevice }> {
  const control = join(dir, 'control.sock');
  const serve = await startServe(['--socket', join(dir, 'nbd.sock'), '--control', control, '--lease-ms', '60000', ...extra, ...files]);
  t.after(() => serve.stop('SIGKILL'));
  const client = await NbdClientDevice.connect({ uri: serve.uri });
  t.after(() => client.close().catch(() => undefined));
  return { serve, control, client };
}

/** Lapses the engine's lease and waits for its event. */
async function lapse(serve: ServeProcess, control: string): Promise<void> {
  const r = await controlRequest(control, { op: 'lease', ms: 0 });
  assert.equal(r.lease?.validForMs, 0);
  await serve.waitForEvent('lease-lapsed');
}

function onNoMember(files: string[], data: Buffer): void {
  for (const f of files) assert.equal(readFileSync(f).indexOf(data), -1, `the held write's bytes are not on ${f}`);
}

test('serve --lease-ms: past the lease a write is held for seconds while reads complete; extending the lease completes it', async (t) => {
  await buildCli();
  const dir = tempDir(t, 'lease-held');
  const files = await members(dir);
  const { serve, control, client } = await leasedEngine(t, dir, files);
  await client.write(0, patternBytes(64 * KiB, 1));
  const before = await controlRequest(control, { op: 'status' });
  assert.ok(before.lease !== undefined && before.lease.validForMs > 50_000 && before.lease.held === 0, JSON.stringify(before.lease));

  await lapse(serve, control);
  const data = patternBytes(64 * KiB, 2);
  const write = watch(client.write(DATA, data));
  const flush = watch(client.flush());
  const start = Date.now();
  let reads = 0;
  while (Date.now() - start < 1200) {
    assert.deepEqual(await client.read(0, 64 * KiB), patternBytes(64 * KiB, 1), 'reads go on during the lapse');
    reads++;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.ok(reads >= 10, `${reads} reads completed`);
  assert.equal(write.settled(), false, 'the write is not acknowledged 1.2 s into the lapse');
  assert.equal(flush.settled(), false, 'nor the flush');
  const held = await controlRequest(control, { op: 'status' });
  assert.deepEqual(held.lease, { validForMs: 0, held: 2, heldBytes: 64 * KiB });
  onNoMember(files, data);
  const shown = await runCli(['status', '--control', control]);
  assert.match(shown.stdout, /lease: LAPSED, writes are held until it is extended; 2 requests held \(64 KiB of writes not yet run\)/);

  const extended = await runCli(['lease', '--control', control, '30000']);
  assert.equal(extended.code, 0, extended.stderr);
  assert.equal(await write.outcome, undefined, 'the write completed once the lease was extended');
  assert.equal(await flush.outcome, undefined);
  assert.deepEqual(await client.read(DATA, 64 * KiB), data, 'and reads back');
  const renewed = await serve.waitForEvent('lease-renewed');
  assert.equal(renewed.released, 2);
  assert.ok(renewed.lapsedMs >= 1200, `lapsed ${renewed.lapsedMs} ms`);
  await client.close();
  assert.equal(await serve.stop(), 0);
  await stoppedCleanly(serve, 'SIGTERM');
});

for (const how of ['control stop', 'SIGTERM'] as const) {
  test(`serve --lease-ms: a write held past the lease fails with EIO when the engine stops (${how}); its bytes are on no member`, async (t) => {
    await buildCli();
    const dir = tempDir(t, 'lease-stop');
    const files = await members(dir);
    const { serve, control, client } = await leasedEngine(t, dir, files);
    await lapse(serve, control);
    const data = patternBytes(64 * KiB, 3);
    const write = watch(client.write(DATA, data));
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(write.settled(), false);
    const child = serve.child;
    const exited = new Promise((r) => (child.exitCode !== null ? r(child.exitCode) : child.once('exit', r)));
    if (how === 'control stop') assert.equal((await runCli(['stop', '--control', control])).code, 0);
    else child.kill('SIGTERM');
    const err = await write.outcome;
    assert.ok(isBlockError(err, 'EIO'), `the held write failed with EIO: ${String(err)}`);
    assert.equal(await exited, 0);
    await stoppedCleanly(serve, how);
    onNoMember(files, data);
    const status = JSON.parse((await runCli(['status', '--json', ...files])).stdout) as { clean: boolean };
    assert.equal(status.clean, true, 'the array stopped cleanly all the same');
  });
}

test('serve --lease-ms: a write held past the lease fails with EIO when the engine is fenced, never reaches a member, and the lease cannot be extended', async (t) => {
  const cli = await buildCli();
  const dir = tempDir(t, 'lease-fence');
  const files = await members(dir);
  const uuids = await Promise.all(files.map(async (f) => (JSON.parse((await runCli(['examine', '--json', f])).stdout) as { superblock: { deviceUuid: string } }).superblock.deviceUuid));
  const { serve, control, client } = await leasedEngine(t, dir, files, ['--epoch', '5']);
  await lapse(serve, control);
  const data = patternBytes(64 * KiB, 4);
  const write = watch(client.write(DATA, data));

  // Another engine takes the members through this node's member service, with a higher epoch.
  const msSocket = join(dir, 'ms.sock');
  const ms: ChildProcess = spawn(process.execPath, [cli, 'member-serve', '--socket', msSocket, dir], { stdio: ['ignore', 'ignore', 'pipe'] });
  let msErr = '';
  ms.stderr!.on('data', (d: Buffer) => (msErr += d.toString()));
  const msExited = new Promise((r) => ms.once('exit', r));
  t.after(async () => {
    if (ms.exitCode === null) ms.kill('SIGTERM');
    await msExited;
  });
  for (const deadline = Date.now() + 20_000; !msErr.includes('listening'); await new Promise((r) => setTimeout(r, 20))) {
    if (Date.now() > deadline || ms.exitCode !== null) assert.fail(`member-serve did not come up: ${msErr}`);
  }
  const taking = startServe(['--socket', join(dir, 'taker.sock'), '--epoch', '6', ...uuids.map((u) => `nbd+unix:///${u}?socket=${msSocket}`)]);
  // Reads go on during the lapse, and meet the raised epoch records: the old engine fences.
  const fenced = serve.waitForEvent('fenced');
  for (let done = false; !done;) {
    done = await Promise.race([fenced.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 100))]);
    await client.read(0, 4096).catch(() => undefined);
  }
  const taker = await taking;
  t.after(() => taker.stop('SIGKILL'));
  const err = await write.outcome;
  assert.ok(isBlockError(err, 'EIO'), `the held write failed with EIO: ${String(err)}`);
  await assert.rejects(controlRequest(control, { op: 'lease', ms: 30_000 }), (e: unknown) => e instanceof EngineError && e.code === 'EFENCED');
  // The taker holds the members now; its reads are what is on them.
  const reader = await NbdClientDevice.connect({ uri: taker.uri });
  t.after(() => reader.close().catch(() => undefined));
  assert.notDeepEqual(await reader.read(DATA, 64 * KiB), data, 'the new owner does not see the held write');
  assert.equal(await taker.stop(), 0);
  onNoMember(files, data);
});
