// The control ops freeze and thaw (engine/control/freeze.ts over md's quiesce) on a real array of
// member files: while frozen, writes wait and the member files on disk are a cleanly stopped
// array (no resync owed); thaw lets the writes go, marks the array active again and reports
// the pause; a freeze nobody thaws ends by itself at its timeout, and the late thaw is refused
// with ETIMEDOUT; one freeze at a time. A crash-consistent freeze writes nothing: the members
// still owe a resync, and copies of them taken while frozen assemble as after a crash, resync the
// chunks the bitmap marks Dirty and hold every write acknowledged before the freeze, none after.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, promises as fs } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { controlRequest, EngineError } from '../../src/engine/control/client.js';
import { ControlServer } from '../../src/engine/control/server.js';
import type { EngineEvent, ThawedEvent } from '../../src/engine/events.js';
import { assembleArray, createArray, readSuperblockFile, surveyArray, type MdArray } from '../../src/md/index.js';

const MiB = 1024 * 1024;

async function served(t: { after(fn: () => Promise<void> | void): void }): Promise<{ array: MdArray; members: string[]; control: string; seen: EngineEvent[] }> {
  const dir = mkdtempSync(join(tmpdir(), 'llraid-freeze-'));
  const members = [0, 1].map((i) => join(dir, `m${i}.img`));
  for (const m of members) {
    await fs.writeFile(m, '');
    await fs.truncate(m, 16 * MiB);
  }
  const array = await createArray({ name: 'ext4:freeze', level: 1, members, bitmap: 'llbitmap', autoSync: false });
  const control = join(dir, 'control.sock');
  const seen: EngineEvent[] = [];
  const server = await ControlServer.listen(control, { array, onStop: () => undefined, events: (e) => seen.push(e) });
  t.after(async () => {
    await server.close();
    await array.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  return { array, members, control, seen };
}

async function resyncOwed(members: string[]): Promise<boolean> {
  const found = await Promise.all(members.map(async (name) => ({ name, superblock: await readSuperblockFile(name) })));
  return surveyArray(found)!.resyncPending;
}

test('frozen: writes wait, the members on disk are clean; thaw resumes them and reports the pause', async (t) => {
  const { array, members, control, seen } = await served(t);
  await array.write(0, Buffer.alloc(65536, 1));
  assert.equal(await resyncOwed(members), true, 'a running array owes a resync on disk');
  const frozen = await controlRequest(control, { op: 'freeze', timeoutMs: 5000 });
  assert.equal(typeof frozen.drainMs, 'number');
  assert.equal(await resyncOwed(members), false, 'frozen, the members are a cleanly stopped array');
  let written = false;
  const w = array.write(0, Buffer.alloc(65536, 2)).then(() => (written = true));
  await new Promise((r) => setTimeout(r, 150));
  assert.equal(written, false, 'a write waits while frozen');
  assert.ok((await fs.readFile(members[0]!)).subarray(1024 * 1024, 1024 * 1024 + 4).equals(Buffer.alloc(4, 1)), 'the member holds the data before the freeze');
  const thawed = await controlRequest(control, { op: 'thaw' });
  assert.ok((thawed.pausedMs ?? 0) >= 150, `paused ${thawed.pausedMs} ms`);
  await w;
  assert.equal(written, true);
  assert.equal(await resyncOwed(members), true, 'active again after thaw');
  assert.ok((await array.read(0, 65536)).equals(Buffer.alloc(65536, 2)));
  assert.deepEqual(seen.map((e) => e.type), ['frozen', 'thawed']);
  assert.deepEqual(seen[1], { type: 'thawed', pausedMs: thawed.pausedMs, timedOut: false });
});

test('crash-consistent: writes wait, nothing is written; copies taken while frozen resync their Dirty chunks and hold exactly the acknowledged writes', async (t) => {
  const { array, members, control, seen } = await served(t);
  // Clean on disk first (a clean freeze and thaw), so only what follows is Dirty in the bitmap.
  await array.write(4 * MiB, Buffer.alloc(MiB, 7));
  await controlRequest(control, { op: 'freeze', timeoutMs: 5000 });
  await controlRequest(control, { op: 'thaw' });
  const acknowledged = [0, 1, 2].map((i) => array.write(i * 65536, Buffer.alloc(65536, 10 + i)));
  await Promise.all(acknowledged);
  const frozen = await controlRequest(control, { op: 'freeze', timeoutMs: 5000, consistency: 'crash' });
  assert.equal(typeof frozen.drainMs, 'number');
  assert.equal(await resyncOwed(members), true, 'a crash-consistent freeze leaves the members active');
  let written = false;
  const late = array.write(0, Buffer.alloc(65536, 99)).then(() => (written = true));
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(written, false, 'a write waits while frozen');
  const copies = members.map((m) => `${m}.copy`);
  for (const [i, m] of members.entries()) await fs.copyFile(m, copies[i]!);
  await controlRequest(control, { op: 'thaw' });
  await late;
  assert.deepEqual(seen.filter((e) => e.type === 'frozen').map((e) => (e as { consistency?: string }).consistency), ['clean', 'crash']);

  const { array: copy, report } = await assembleArray({ members: copies });
  try {
    assert.equal(report.unclean, true, 'the copy assembles as after a crash');
    const summary = await copy.waitSync();
    assert.ok(summary?.complete, 'the resync ran to its end');
    assert.ok(summary.bytesSynced > 0 && summary.bytesSynced < 16 * MiB, `only the Dirty chunks are resynced (${summary.bytesSynced} bytes)`);
    for (const i of [0, 1, 2]) assert.ok((await copy.read(i * 65536, 65536)).equals(Buffer.alloc(65536, 10 + i)), `acknowledged write ${i} is in the copy`);
    assert.ok((await copy.read(4 * MiB, MiB)).equals(Buffer.alloc(MiB, 7)), 'the earlier, clean data is in the copy');
  } finally {
    await copy.stop();
  }
  // Both copied members agree byte for byte in their data areas: no write was half done.
  const sb = await readSuperblockFile(copies[0]!);
  const [a, b] = await Promise.all(copies.map((c) => fs.readFile(c)));
  const at = Number(sb.dataOffset) * 512;
  assert.ok(a!.subarray(at, at + 8 * MiB).equals(b!.subarray(at, at + 8 * MiB)), 'the mirrors of the copy agree');
});

test('a freeze nobody thaws ends at its timeout; the late thaw is ETIMEDOUT; one freeze at a time', async (t) => {
  const { array, control, seen } = await served(t);
  await controlRequest(control, { op: 'freeze', timeoutMs: 300 });
  await assert.rejects(controlRequest(control, { op: 'freeze', timeoutMs: 300 }), (e: unknown) => e instanceof EngineError && e.code === 'EBUSY');
  const started = performance.now();
  await array.write(0, Buffer.alloc(4096, 3));
  const waited = performance.now() - started;
  assert.ok(waited >= 200 && waited < 3000, `the write waited ${Math.round(waited)} ms, about the 300 ms timeout`);
  await assert.rejects(controlRequest(control, { op: 'thaw' }), (e: unknown) => e instanceof EngineError && e.code === 'ETIMEDOUT' && /timeout before thaw/.test(e.message));
  await assert.rejects(controlRequest(control, { op: 'thaw' }), (e: unknown) => e instanceof EngineError && e.code === 'EINVAL');
  const ended = seen.find((e): e is ThawedEvent => e.type === 'thawed');
  assert.equal(ended?.timedOut, true, 'the event says the timeout ended it');
  await assert.rejects(controlRequest(control, { op: 'freeze', timeoutMs: 0 }), (e: unknown) => e instanceof EngineError && e.code === 'EINVAL');
});
