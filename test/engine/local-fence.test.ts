// Engines that open their member files themselves are fenced by attach epoch like remote ones
// (src/engine/local-members.ts): real `llraid serve` processes on real files. A lower epoch
// than a member accepted is refused before anything is written; and `llraid member-serve`
// taking a member that a running engine of this node holds, for an engine of a higher epoch,
// fences the running one (its NBD client gets EIO) and serves the new one, which reads back
// every write the old one acknowledged.

import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildCli, runCli } from '../support/cli.js';
import { tempDir } from '../support/temp-dir.js';
import { patternBytes, startServe } from '../nbd/helpers.js';
import { NbdClientDevice } from '../../src/nbd/index.js';

const KiB = 1024;

function digest(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

function record(dir: string, name: string): string {
  return readFileSync(join(dir, '.llraid-epochs', name), 'utf8').trim();
}

async function create(dir: string): Promise<[string, string]> {
  const [a, b] = [join(dir, 'a.img'), join(dir, 'b.img')];
  const r = await runCli(['create', '-l', '1', '-N', 'vol', '-z', '16M', a, b]);
  assert.equal(r.code, 0, r.stderr);
  return [a, b];
}

test('local members: a higher epoch is refused (busy) while another engine holds the files; a lower one than the members accepted is refused, nothing written', async (t) => {
  await buildCli();
  const dir = tempDir(t, 'local-fence-epochs');
  const [a, b] = await create(dir);
  const first = await startServe(['--socket', join(dir, 'e5.sock'), '--epoch', '5', a, b]);
  t.after(() => first.stop('SIGKILL'));
  assert.equal(record(dir, 'a.img'), '5');
  assert.equal(record(dir, 'b.img'), '5');

  // The files are the first engine's: refused as before epochs, and the records stay.
  const busy = await runCli(['serve', '--socket', join(dir, 'e6.sock'), '--epoch', '6', a, b]);
  assert.notEqual(busy.code, 0);
  assert.match(busy.stderr, /in use by pid \d+/);
  assert.equal(record(dir, 'a.img'), '5');

  assert.equal(await first.stop(), 0);
  const second = await startServe(['--socket', join(dir, 'e6b.sock'), '--epoch', '6', a, b]);
  t.after(() => second.stop('SIGKILL'));
  assert.equal(record(dir, 'a.img'), '6');
  assert.equal(record(dir, 'b.img'), '6');
  assert.equal(await second.stop(), 0);

  const before = [digest(a), digest(b)];
  const stale = await runCli(['serve', '--socket', join(dir, 'e5b.sock'), '--epoch', '5', a, b]);
  assert.notEqual(stale.code, 0);
  assert.match(stale.stderr, new RegExp(`fenced: member ${a.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} has accepted epoch 6; this engine presented 5`));
  assert.deepEqual([digest(a), digest(b)], before, 'the refused engine wrote nothing');
  assert.equal(record(dir, 'a.img'), '6');

  // Without an epoch nothing is read or written: such an engine is not fenced (opt-in).
  const plain = await startServe(['--socket', join(dir, 'plain.sock'), a, b]);
  assert.equal(await plain.stop(), 0);
  assert.equal(record(dir, 'a.img'), '6');
});

test('local members: member-serve taking them with a higher epoch fences the running engine, and the new one reads every acknowledged write', async (t) => {
  const cli = await buildCli();
  const dir = tempDir(t, 'local-fence-take');
  const [a, b] = await create(dir);
  const uuidOf = async (path: string): Promise<string> => {
    const r = await runCli(['examine', '--json', path]);
    assert.equal(r.code, 0, r.stderr);
    return (JSON.parse(r.stdout) as { superblock: { deviceUuid: string } }).superblock.deviceUuid;
  };
  const [uuidA, uuidB] = [await uuidOf(a), await uuidOf(b)];

  const old = await startServe(['--socket', join(dir, 'old.sock'), '--epoch', '5', a, b]);
  t.after(() => old.stop('SIGKILL'));
  const msSocket = join(dir, 'ms.sock');
  const msEvents = join(dir, 'ms.jsonl');
  const ms: ChildProcess = spawn(process.execPath, [cli, 'member-serve', '--socket', msSocket, '--events', msEvents, dir], { stdio: ['ignore', 'ignore', 'pipe'] });
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

  // One writer, one request at a time over 64 slots of 64 KiB: slot → seed of its last acknowledged write.
  const client = await NbdClientDevice.connect({ uri: old.uri });
  t.after(() => client.close().catch(() => undefined));
  const SLOT = 64 * KiB;
  const acked = new Map<number, number>();
  let lastFailed: { slot: number; err: Error } | undefined;
  let seed = 0;
  const writer = (async () => {
    for (;;) {
      seed++;
      const slot = seed % 64;
      try {
        await client.write(slot * SLOT, patternBytes(SLOT, seed));
      } catch (err) {
        lastFailed = { slot, err: err as Error };
        return;
      }
      acked.set(slot, seed);
    }
  })();
  while (acked.size < 64) await new Promise((r) => setTimeout(r, 10));

  const remote = (uuid: string): string => `nbd+unix:///${uuid}?socket=${msSocket}`;
  const taker = await startServe(['--socket', join(dir, 'new.sock'), '--epoch', '6', remote(uuidA), remote(uuidB)]);
  t.after(() => taker.stop('SIGKILL'));

  const fenced = await old.waitForEvent('fenced');
  assert.match(fenced.reason, /has accepted epoch 6; this engine presented 5/);
  await writer;
  assert.ok(lastFailed !== undefined, 'the old engine stopped acknowledging writes');
  await assert.rejects(client.write(0, patternBytes(SLOT, 999_999)), /EIO|error|fenced/i);
  assert.equal(record(dir, 'a.img'), '6');
  assert.equal(record(dir, 'b.img'), '6');
  assert.match(readFileSync(msEvents, 'utf8'), /"type":"taking"/);

  // Every acknowledged write is there through the new engine (the slot of the refused write may hold either).
  const reader = await NbdClientDevice.connect({ uri: taker.uri });
  try {
    for (const [slot, s] of acked) {
      if (slot === lastFailed.slot) continue;
      const got = await reader.read(slot * SLOT, SLOT);
      assert.ok(got.equals(patternBytes(SLOT, s)), `slot ${slot}: expected the write of seed ${s}`);
    }
  } finally {
    await reader.close();
  }

  assert.equal(await taker.stop(), 0);
  await old.stop();
  ms.kill('SIGTERM');
  await msExited;
  const check = await runCli(['check', '--epoch', '6', a, b]);
  assert.equal(check.code, 0, check.stderr);
  assert.match(check.stdout, /mismatch_cnt 0\b/);
});

test('local members: an idle engine whose one member is taken (its record raised) is fenced, not degraded', async (t) => {
  await buildCli();
  const dir = tempDir(t, 'local-fence-idle');
  const [a, b] = await create(dir);
  const engine = await startServe(['--socket', join(dir, 'e.sock'), '--epoch', '5', a, b]);
  t.after(() => engine.stop('SIGKILL'));
  // What the member service does on taking a.img for an engine elsewhere, with no I/O here.
  const { writeFileSync, renameSync } = await import('node:fs');
  writeFileSync(join(dir, '.llraid-epochs', 'a.img.new'), '6\n');
  renameSync(join(dir, '.llraid-epochs', 'a.img.new'), join(dir, '.llraid-epochs', 'a.img'));
  const fenced = await engine.waitForEvent('fenced');
  assert.match(fenced.reason, /has accepted epoch 6; this engine presented 5/);
  assert.deepEqual((await engine.events()).filter((e) => e.type === 'member-failed'), [], 'no member failed: the array did not go on degraded on b');
  assert.equal(await engine.stop(), 0);
  assert.equal((await engine.events()).at(-1)?.type, 'stopped');
  assert.deepEqual((await engine.events()).at(-1), { ...(await engine.events()).at(-1), fenced: true });
});
