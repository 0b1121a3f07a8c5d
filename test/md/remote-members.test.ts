// Members reached through a MemberOpener (remote ones, here a stand-in network of memory devices):
// write-mostly reads, a member that drops out mid-write and comes back (the return check re-adds
// it, copying only the chunks written meanwhile), and a fenced member that stops the array.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryDevice } from '../../src/block/memory-device.js';
import { CountingDevice } from '../../src/block/counting-device.js';
import { isBlockError } from '../../src/block/errors.js';
import { assembleArray, createArray, type ArrayEvent, type MdArray, type MemberOpener, type MemberSpec } from '../../src/md/index.js';
import { readSuperblock } from '../../src/md/superblock.js';
import { RecordingDevice } from '../support/recording-device.js';
import { StandInNetwork } from '../support/standin-network.js';
import { pattern } from './array-fixtures.js';

const MEMBER = 64 << 20;
/** Bitmap chunk: 4 KiB, so a 4 KiB write marks one chunk. */
const BCHUNK = 4096;
/** One written chunk per 512-byte bitmap block (512 chunks apart): no infect, exact counts. */
const SPACING = 512 * BCHUNK;
const at = (k: number): number => k * SPACING;
const TUNING = { bitmapChunkSize: BCHUNK, returnIntervalMs: 40, returnTimeoutMs: 1000, barrierIdle: 600 } as const;

function local(name: string): { name: string; device: CountingDevice } {
  return { name, device: new CountingDevice(new MemoryDevice(MEMBER, { name })) };
}

function recorder(a: MdArray): ArrayEvent[] {
  const events: ArrayEvent[] = [];
  a.onEvent((e) => events.push(e));
  return events;
}

async function waitFor<T>(what: string, probe: () => T | undefined, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = probe();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function marked(a: MdArray): number {
  const c = a.status().bitmap.counts;
  return c.dirty + c.needSync + c.syncing;
}

/** Compares the data areas of two member devices over the written chunks. */
async function sameChunks(x: { read(o: number, l: number): Promise<Buffer> }, y: { read(o: number, l: number): Promise<Buffer> }, ks: number[], what: string): Promise<void> {
  for (const k of ks) {
    const off = 2048 * 512 + at(k);
    assert.ok((await x.read(off, BCHUNK)).equals(await y.read(off, BCHUNK)), `${what}: chunk ${k} differs`);
  }
}

/** A clean raid1 of `members`, stopped and assembled again: every chunk written so far is Clean. */
async function cleanRaid1(net: StandInNetwork, members: MemberSpec[], before: number[], tuning: object = {}): Promise<MdArray> {
  const a = await createArray({ name: 'vol', level: 1, members, opener: net.opener, ...TUNING, ...tuning });
  for (const k of before) await a.write(at(k), pattern(k, BCHUNK));
  await a.stop();
  return (await assembleArray({ members, opener: net.opener, ...TUNING, ...tuning })).array;
}

test('a remote member is write-mostly: reads go to it only when no other copy is in sync', async (t) => {
  const net = new StandInNetwork();
  net.addMember('test://b', MEMBER);
  const a0 = local('local-a');
  const a = await createArray({ name: 'vol', level: 1, members: [a0, 'test://b'], opener: net.opener, ...TUNING });
  t.after(() => a.stop());
  const st = a.status().members.find((m) => m.name === 'test://b');
  assert.deepEqual([st?.writeMostly, st?.remote], [true, true]);
  for (let k = 0; k < 20; k++) await a.write(at(k), pattern(k, BCHUNK));
  net.resetCounters('test://b');
  const readsBefore = a0.device.counters.readBytes;
  // Many reads in flight at once: the balancer would spread them if write-mostly did not stop it.
  await Promise.all(Array.from({ length: 200 }, (_, i) => a.read(at(i % 20), BCHUNK)));
  assert.equal(net.counters('test://b').dataReadBytes, 0, 'no read reached the write-mostly member');
  assert.equal(a0.device.counters.readBytes - readsBefore, 200 * BCHUNK);
  // Writes reach both before they are acknowledged (protocol C).
  await a.write(at(21), pattern(21, BCHUNK));
  assert.equal(net.counters('test://b').dataWriteBytes, BCHUNK);

  await a.fail('local-a');
  const data = await a.read(at(3), BCHUNK);
  assert.ok(data.equals(pattern(3, BCHUNK)));
  assert.equal(net.counters('test://b').dataReadBytes, BCHUNK, 'the only copy left serves');
});

test('raid1: a remote member that drops out mid-write comes back by itself, and only the chunks written meanwhile are copied', async (t) => {
  const net = new StandInNetwork();
  net.addMember('test://b', MEMBER);
  const a0 = local('local-a');
  const members: MemberSpec[] = [a0, 'test://b'];
  // Slow enough that status sees the recovery run.
  const a = await cleanRaid1(net, members, [0, 1, 2, 3], { syncSpeedMin: 40, syncSpeedMax: 40 });
  t.after(() => a.stop());
  const events = recorder(a);
  assert.equal(marked(a), 0, 'clean after the restart');

  const inFlight = [4, 5, 6, 7];
  const pending = inFlight.map((k) => a.write(at(k), pattern(100 + k, BCHUNK)));
  await new Promise(setImmediate);
  net.unplug('reset');
  await Promise.all(pending);
  const away = [10, 11, 12, 13, 14];
  for (const k of away) await a.write(at(k), pattern(200 + k, BCHUNK));

  const s = a.status();
  assert.equal(s.state, 'degraded');
  const b = s.members.find((m) => m.name === 'test://b');
  assert.deepEqual([b?.state, b?.awaited], ['faulty', true]);
  assert.ok(events.some((e) => e.type === 'member-failed' && e.member === 'test://b' && e.watched));
  assert.equal(marked(a), inFlight.length + away.length, 'the bitmap marks what the member may lack');
  // While unplugged the return check keeps trying, and fails.
  const opens = net.opens;
  await new Promise((r) => setTimeout(r, 200));
  assert.ok(net.opens > opens, 'reopen attempts go on');
  assert.equal(a.status().members.find((m) => m.name === 'test://b')?.state, 'faulty');

  net.resetCounters('test://b');
  const toCopy = marked(a) * BCHUNK;
  net.replug();
  const back = await waitFor('the member to return', () => events.find((e) => e.type === 'member-returned'));
  assert.deepEqual(back, { type: 'member-returned', member: 'test://b', recovery: 'bitmap', bytesToCopy: toCopy });
  const rec = a.status().members.find((m) => m.name === 'test://b')?.recovery;
  assert.equal(rec?.kind, 'bitmap');
  assert.equal(rec?.bytesToCopy, toCopy);
  assert.ok(rec.bytesDone <= toCopy);
  assert.deepEqual([rec.speedMinKiBs, rec.speedMaxKiBs], [40, 40], 'the recovery is throttled like every sync pass');

  const ended = await waitFor('the recovery to end', () => events.find((e) => e.type === 'sync-ended' && e.summary.mode === 'recovery'));
  assert.ok(ended.type === 'sync-ended' && ended.summary.complete);
  assert.equal(ended.type === 'sync-ended' && ended.summary.bytesSynced, toCopy);
  assert.deepEqual(ended.type === 'sync-ended' && ended.members, ['test://b']);
  assert.equal(net.counters('test://b').dataWriteBytes, toCopy, 'exactly the marked chunks crossed the network');
  assert.equal(a.status().state, 'active');
  assert.equal(a.status().members.find((m) => m.name === 'test://b')?.recovery, null);

  a.startSync('check');
  assert.equal((await a.waitSync())?.mismatches, 0);
  await sameChunks(a0.device, net.raw('test://b'), [0, 1, 2, 3, ...inFlight, ...away], 'mirrors');
});

test('a fenced member stops the array: nothing more is acknowledged or written, and stop writes nothing', async (t) => {
  const net = new StandInNetwork();
  net.addMember('test://b', MEMBER);
  let afterFence = 0;
  let fenced = false;
  const rec = new RecordingDevice(new MemoryDevice(MEMBER), {
    onRequest: (r) => {
      if (fenced && r.op !== 'read') afterFence++;
    },
  });
  const a = await createArray({ name: 'vol', level: 1, members: [{ name: 'local-a', device: rec }, 'test://b'], opener: net.opener, ...TUNING });
  t.after(() => a.abandon());
  const events = recorder(a);
  a.onEvent((e) => {
    if (e.type === 'fenced') fenced = true;
  });
  for (let k = 0; k < 8; k++) await a.write(at(k), pattern(k, BCHUNK));
  const eventsBefore = a.status().events;
  const remoteWrites = net.counters('test://b').writes;

  // Writes in flight as the fence arrives: none that completes after it is acknowledged.
  const order: string[] = [];
  a.onEvent((e) => {
    if (e.type === 'fenced') order.push('fence');
  });
  const pending = Array.from({ length: 32 }, (_, i) => a.write(at(i % 30), pattern(300 + i, BCHUNK)).then(
    () => order.push('ack'),
    (err: unknown) => {
      order.push('reject');
      assert.ok(isBlockError(err, 'EFENCED'), `rejected with EFENCED, found ${String(err)}`);
    },
  ));
  net.fence('test://b');
  await Promise.all(pending);
  // The fence may have been met by the first write after it, if none was in flight.
  await assert.rejects(a.write(at(1), pattern(9, BCHUNK)), (err) => isBlockError(err, 'EFENCED'));
  assert.ok(order.includes('fence'));
  assert.ok(!order.slice(order.indexOf('fence')).includes('ack'), `an ack after the fence: ${order.join(' ')}`);

  const s = a.status();
  assert.equal(s.state, 'fenced');
  assert.match(s.fenced ?? '', /test:\/\/b.*fenced/);
  assert.equal(s.members.find((m) => m.name === 'test://b')?.state, 'in_sync', 'a fence never fails the member');
  assert.equal(s.events, eventsBefore, 'no superblock update');
  assert.equal(events.filter((e) => e.type === 'fenced').length, 1);

  for (const op of [
    () => a.write(at(2), pattern(2, BCHUNK)),
    () => a.writeZeroes(at(2), BCHUNK),
    () => a.discard(at(2), BCHUNK),
    () => a.flush(),
    () => a.read(at(2), BCHUNK),
  ]) await assert.rejects(op(), (err) => isBlockError(err, 'EFENCED'));
  await assert.rejects(a.fail('local-a'), (err) => isBlockError(err, 'EFENCED'));
  assert.throws(() => a.startSync('check'), (err) => isBlockError(err, 'EFENCED'));

  await a.stop();
  assert.equal(afterFence, 0, 'no write, flush or zeroing reached the local member after the fence');
  assert.equal(net.counters('test://b').writes - remoteWrites <= 32, true);
  const sb = await readSuperblock(rec.inner, 'local-a');
  assert.equal(sb.events.toString(), eventsBefore, 'the superblock still says what it said at the fence');
});

test('a member that comes back fenced (its service took a higher epoch meanwhile) stops the degraded array', async (t) => {
  const net = new StandInNetwork();
  net.addMember('test://b', MEMBER);
  const a0 = local('local-a');
  const a = await cleanRaid1(net, [a0, 'test://b'], [0, 1]);
  t.after(() => a.stop());
  const events = recorder(a);
  net.unplug('reset');
  await a.write(at(2), pattern(2, BCHUNK));
  assert.equal(a.status().state, 'degraded', 'a link that drops degrades the array');
  // Meanwhile another engine took the member with a higher epoch; the link comes back.
  net.fence('test://b');
  net.replug();
  await waitFor('the array to be fenced', () => events.find((e) => e.type === 'fenced'));
  assert.equal(a.status().state, 'fenced');
  const writes = a0.device.counters.writeOps;
  await assert.rejects(a.write(at(3), pattern(3, BCHUNK)), (err: Error & { code?: string }) => err.code === 'EFENCED');
  assert.equal(a0.device.counters.writeOps, writes, 'nothing is written to the local member after the fence');
});

test('raid10: two remote members cut off by a hanging link come back, and the copies agree', async (t) => {
  const net = new StandInNetwork();
  net.timeoutMs = 100;
  net.addMember('test://1', MEMBER);
  net.addMember('test://3', MEMBER);
  const members: MemberSpec[] = [local('local-0'), 'test://1', local('local-2'), 'test://3'];
  const a = await createArray({ name: 'vol', level: 10, members, chunkSize: 64 * 1024, opener: net.opener, ...TUNING });
  t.after(() => a.stop());
  const events = recorder(a);
  const ks = Array.from({ length: 12 }, (_, i) => i);
  for (const k of ks) await a.write(at(k), pattern(k, BCHUNK));
  net.unplug('hang');
  for (const k of ks) await a.write(at(k) + BCHUNK, pattern(500 + k, BCHUNK));
  assert.equal(a.status().state, 'degraded');
  assert.equal(a.status().members.filter((m) => m.state === 'faulty').length, 2);
  net.replug();
  await waitFor('both members back', () => (events.filter((e) => e.type === 'member-returned').length === 2 ? true : undefined));
  await waitFor('the array in sync', () => (a.status().state === 'active' && a.status().sync === null ? true : undefined));
  for (const e of events.filter((x) => x.type === 'member-returned')) assert.equal(e.type === 'member-returned' && e.recovery, 'bitmap');
  a.startSync('check');
  assert.equal((await a.waitSync())?.mismatches, 0);
});

test('raid5: a remote member that drops out is re-added by the bitmap and parity agrees after', async (t) => {
  const net = new StandInNetwork();
  net.addMember('test://c', MEMBER);
  const members: MemberSpec[] = [local('local-a'), local('local-b'), 'test://c'];
  const a = await createArray({ name: 'vol', level: 5, members, chunkSize: 64 * 1024, opener: net.opener, ...TUNING });
  t.after(() => a.stop());
  const events = recorder(a);
  for (let k = 0; k < 10; k++) await a.write(at(k), pattern(k, BCHUNK));
  await a.waitSync();
  net.unplug('reset');
  for (let k = 0; k < 10; k++) await a.write(at(k) + 8192, pattern(700 + k, BCHUNK));
  assert.equal(a.status().state, 'degraded');
  net.replug();
  const back = await waitFor('the member to return', () => events.find((e) => e.type === 'member-returned'));
  assert.equal(back.type === 'member-returned' && back.recovery, 'bitmap');
  await waitFor('the array in sync', () => (a.status().state === 'active' && a.status().sync === null ? true : undefined));
  for (let k = 0; k < 10; k++) assert.ok((await a.read(at(k) + 8192, BCHUNK)).equals(pattern(700 + k, BCHUNK)));
  a.startSync('check');
  assert.equal((await a.waitSync())?.mismatches, 0);
});

test('a returning member that was written elsewhere meanwhile is not taken back by itself', async (t) => {
  const net = new StandInNetwork();
  net.addMember('test://b', MEMBER);
  const a = await cleanRaid1(net, [local('local-a'), 'test://b'], [0, 1]);
  t.after(() => a.stop());
  const events = recorder(a);
  net.unplug('reset');
  await a.write(at(5), pattern(5, BCHUNK));
  assert.equal(a.status().state, 'degraded');
  // Someone assembled the remote member alone and wrote to it (its events went far ahead).
  const raw = net.raw('test://b');
  const { array: other } = await assembleArray({ members: [{ name: 'alone', device: new RecordingDevice(raw) }], force: true, ...TUNING });
  for (let i = 0; i < 4; i++) await other.writeSuperblocks();
  await other.abandon();
  net.replug();
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(events.filter((e) => e.type === 'member-returned').length, 0);
  const b = a.status().members.find((m) => m.name === 'test://b');
  assert.deepEqual([b?.state, b?.awaited], ['faulty', true], 'still faulty, still watched');
});

test('return attempts have a deadline and never overlap, and an open that answers too late is closed', async (t) => {
  const net = new StandInNetwork();
  net.addMember('test://b', MEMBER);
  // An opener that ignores the abort and answers after `delay` ms.
  let delay = 0;
  let inFlight = 0;
  let most = 0;
  let lateClosed = 0;
  const slow: MemberOpener = async (name, mode) => {
    inFlight++;
    most = Math.max(most, inFlight);
    try {
      if (delay > 0) await new Promise((r) => setTimeout(r, delay));
      const r = await net.opener(name, mode);
      if (r !== undefined && mode.signal?.aborted) {
        const close = r.device.close.bind(r.device);
        r.device.close = async () => {
          lateClosed++;
          await close();
        };
      }
      return r;
    } finally {
      inFlight--;
    }
  };
  const a = await createArray({ name: 'vol', level: 1, members: [local('local-a'), 'test://b'], opener: slow, ...TUNING, returnIntervalMs: 20, returnTimeoutMs: 60 });
  t.after(() => a.stop());
  const events = recorder(a);
  net.unplug('reset');
  await a.write(at(1), pattern(1, BCHUNK));
  assert.equal(a.status().state, 'degraded');
  delay = 200;
  net.replug();
  const opens = net.opens;
  await new Promise((r) => setTimeout(r, 700));
  assert.equal(most, 1, 'one open at a time');
  assert.ok(net.opens - opens >= 2, `attempts go on after a deadline passed (${net.opens - opens})`);
  assert.ok(lateClosed >= 1, 'opens that answered after their deadline were closed');
  assert.equal(events.filter((e) => e.type === 'member-returned').length, 0);
  delay = 0;
  await waitFor('the member to return', () => events.find((e) => e.type === 'member-returned'));
  await a.waitSync();
  assert.equal(a.status().state, 'active');
});

/** A clean raid1 of a local member and test://b, stopped: `before` chunks written and Clean. */
async function stoppedRaid1(net: StandInNetwork, before: number[], options: object = {}): Promise<{ a0: ReturnType<typeof local>; members: MemberSpec[] }> {
  net.addMember('test://b', MEMBER);
  const a0 = local('local-a');
  const members: MemberSpec[] = [a0, 'test://b'];
  const a = await createArray({ name: 'vol', level: 1, members, opener: net.opener, ...TUNING, ...options });
  for (const k of before) await a.write(at(k), pattern(k, BCHUNK));
  await a.stop();
  return { a0, members };
}

test('a remote member unreachable at assembly: force starts degraded, and the member comes back by itself, copying only what was written meanwhile', async (t) => {
  const net = new StandInNetwork();
  const { a0, members } = await stoppedRaid1(net, [0, 1, 2, 3]);
  net.unplug('reset');
  const { array: a, report } = await assembleArray({ members, opener: net.opener, force: true, ...TUNING });
  t.after(() => a.stop());
  const events = recorder(a);
  assert.ok(report.stale.some((s) => s.name === 'test://b' && /unreachable.*connection reset/.test(s.reason)), JSON.stringify(report.stale));
  assert.equal(a.status().state, 'degraded');
  const b = a.status().members.find((m) => m.name === 'test://b');
  assert.deepEqual(
    [b?.state, b?.awaited, b?.remote, b?.role, b?.devNumber],
    ['faulty', true, true, null, null],
  );
  assert.match(b?.failure ?? '', /unreachable since the array was assembled: .*connection reset/);

  const away = [10, 11, 12];
  for (const k of away) await a.write(at(k), pattern(200 + k, BCHUNK));
  assert.equal(marked(a), away.length, 'the bitmap marks only what was written degraded');
  const opens = net.opens;
  await new Promise((r) => setTimeout(r, 200));
  assert.ok(net.opens > opens, 'the array keeps trying to open it');

  net.resetCounters('test://b');
  const toCopy = away.length * BCHUNK;
  net.replug();
  const back = await waitFor('the member to return', () => events.find((e) => e.type === 'member-returned'));
  assert.deepEqual(back, { type: 'member-returned', member: 'test://b', recovery: 'bitmap', bytesToCopy: toCopy });
  const ended = await waitFor('the recovery to end', () => events.find((e) => e.type === 'sync-ended' && e.summary.mode === 'recovery'));
  assert.ok(ended.type === 'sync-ended' && ended.summary.complete);
  assert.equal(ended.type === 'sync-ended' && ended.summary.bytesSynced, toCopy);
  assert.equal(net.counters('test://b').dataWriteBytes, toCopy, 'exactly the chunks written degraded crossed the network');
  const s = a.status();
  assert.equal(s.state, 'active');
  assert.deepEqual(s.members.filter((m) => m.name === 'test://b').map((m) => [m.state, m.awaited, m.writeMostly]), [['in_sync', false, true]]);

  a.startSync('check');
  assert.equal((await a.waitSync())?.mismatches, 0);
  await sameChunks(a0.device, net.raw('test://b'), [0, 1, 2, 3, ...away], 'mirrors');
});

test('a remote member unreachable at assembly: without force the assembly is refused, naming it', async () => {
  const net = new StandInNetwork();
  const { a0, members } = await stoppedRaid1(net, [0]);
  net.unplug('reset');
  const writes = a0.device.counters.writeOps;
  await assert.rejects(
    assembleArray({ members, opener: net.opener, ...TUNING }),
    (err: Error & { code?: string }) => err.code === 'ENODEV'
      && /member test:\/\/b is unreachable \(.*connection reset\); use force to start degraded without it: the array then opens it again every 40 ms/.test(err.message),
  );
  assert.equal(a0.device.counters.writeOps, writes, 'nothing was written');
});

test('a remote member unreachable at assembly that answers fenced stops the array', async (t) => {
  const net = new StandInNetwork();
  const { a0, members } = await stoppedRaid1(net, [0, 1]);
  net.unplug('reset');
  const { array: a } = await assembleArray({ members, opener: net.opener, force: true, ...TUNING });
  t.after(() => a.stop());
  const events = recorder(a);
  await a.write(at(2), pattern(2, BCHUNK));
  assert.equal(a.status().state, 'degraded');
  // Another engine took the volume while this one could not reach the member.
  net.fence('test://b');
  net.replug();
  const fenced = await waitFor('the array to be fenced', () => events.find((e) => e.type === 'fenced'));
  assert.equal(fenced.type === 'fenced' && fenced.member, 'test://b');
  assert.equal(a.status().state, 'fenced');
  const writes = a0.device.counters.writeOps;
  await assert.rejects(a.write(at(3), pattern(3, BCHUNK)), (err: Error & { code?: string }) => err.code === 'EFENCED');
  assert.equal(a0.device.counters.writeOps, writes, 'nothing is written to the local member after the fence');
});

test('a remote member fenced at assembly is refused even with force: running without it would be split brain', async () => {
  const net = new StandInNetwork();
  const { members } = await stoppedRaid1(net, [0]);
  net.fence('test://b');
  await assert.rejects(assembleArray({ members, opener: net.opener, force: true, ...TUNING }), (err) => isBlockError(err, 'EFENCED'));
});

test('a member unreachable at assembly: remove stops watching it, re-add by hand brings it back', async (t) => {
  const net = new StandInNetwork();
  const { members } = await stoppedRaid1(net, [0]);
  net.unplug('reset');
  const { array: a } = await assembleArray({ members, opener: net.opener, force: true, ...TUNING, returnIntervalMs: 60_000 });
  t.after(() => a.stop());
  await assert.rejects(a.add('test://b'), (err: Error & { code?: string }) => err.code === 'EBUSY');
  await a.remove('test://b');
  assert.equal(a.status().members.some((m) => m.name === 'test://b'), false);
  net.replug();
  assert.equal(await a.reAdd('test://b'), 'bitmap');
  await a.waitSync();
  assert.equal(a.status().state, 'active');
});

test('a member unreachable at assembly whose absence no bitmap covers comes back with a full recovery', async (t) => {
  const net = new StandInNetwork();
  const { a0, members } = await stoppedRaid1(net, [0, 1], { bitmap: 'none' });
  net.unplug('reset');
  const { array: a } = await assembleArray({ members, opener: net.opener, force: true, ...TUNING });
  t.after(() => a.stop());
  const events = recorder(a);
  await a.write(at(4), pattern(4, BCHUNK));
  net.replug();
  const back = await waitFor('the member to return', () => events.find((e) => e.type === 'member-returned'));
  assert.equal(back.type === 'member-returned' && back.recovery, 'full');
  await waitFor('the recovery to end', () => events.find((e) => e.type === 'sync-ended' && e.summary.mode === 'recovery'));
  assert.equal(a.status().state, 'active');
  await sameChunks(a0.device, net.raw('test://b'), [0, 1, 4], 'mirrors');
});
