// llbitmap on the I/O and sync paths: write ordering and durability, coalesced unplugs, the
// per-page barrier and daemon, infect, discard, sync hooks, degraded rules, proactive sync and
// shutdown (llbitmap.md A4-A8; scenarios E7, E8, E9, E10, E12, E13; pitfalls B-a..B-k).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LlBitmap, State, MIN_CHUNK_SIZE } from '../../src/md/llbitmap/index.js';
import { MdError } from '../../src/md/errors.js';
import { crash, devices, FakeHost, quiet, settled, sleep, type RecordingDevice } from './llbitmap-fixtures.js';
import { runOnClock, settle, settlesWithoutTime, VirtualClock } from '../support/virtual-clock.js';

const CS = MIN_CHUNK_SIZE; // 64 KiB
const KiB = 1024;

async function make(
  n: number,
  chunks: number,
  extra: { parity?: boolean; barrierIdle?: number; daemonSleep?: number; assumeClean?: boolean; spaceBytes?: number } = {},
) {
  const devs = devices(n);
  const host = new FakeHost(devs, extra.parity ?? false);
  const bm = await LlBitmap.create(host, {
    ioSize: 512,
    syncSize: chunks * CS,
    spaceBytes: extra.spaceBytes ?? 8 * KiB,
    barrierIdle: extra.barrierIdle ?? 5,
    daemonSleep: extra.daemonSleep ?? 30,
    assumeClean: extra.assumeClean ?? false,
  });
  for (const d of devs) {
    d.writes.length = 0;
    d.flushes = 0;
  }
  return { devs, host, bm };
}

/** Durability points on a member: FUA writes plus cache flushes. */
function durablePoints(d: RecordingDevice): number {
  return d.writes.filter((w) => w.fua).length + d.flushes;
}

function states(bm: LlBitmap, from: number, to: number): number[] {
  const out: number[] = [];
  for (let c = from; c <= to; c++) out.push(bm.stateOf(c));
  return out;
}

test('E8: unplug resolves only once the bitmap block is durable on every member', async () => {
  const { devs, bm } = await make(2, 64);
  let release!: () => void;
  devs[1]!.hold = new Promise((r) => (release = r));
  await bm.startWrite(7 * CS, 4096);
  const unplugged = Promise.resolve(bm.unplug());
  assert.equal(await settled(unplugged), 'pending');
  assert.equal((await devs[0]!.durableChunks(7, 1))[0], State.Dirty);
  assert.equal((await devs[1]!.durableChunks(7, 1))[0], State.Unwritten);
  devs[1]!.hold = null;
  release();
  await unplugged;
  // A power cut right after unplug (before the data write lands) finds the chunk Dirty on every member.
  for (const d of await crash(devs)) assert.equal((await d.durableChunks(7, 1))[0], State.Dirty);
  bm.endWrite(7 * CS, 4096);
  await bm.close();
});

test('E8: a crash between unplug and the data write reassembles with the chunk to resync', async () => {
  const { devs, host, bm } = await make(2, 64, { assumeClean: true });
  await bm.startWrite(9 * CS + 512, 512);
  await bm.unplug();
  // Data write issued here; power is cut before it completes.
  const bm2 = await LlBitmap.load(new FakeHost(await crash(devs)), { ioSize: 512, syncSize: 64 * CS });
  assert.equal(bm2.stateOf(9), State.NeedSync);
  assert.equal(bm2.counts().clean, 63);
  await bm2.close();
  bm.endWrite(9 * CS + 512, 512);
  await bm.close();
  assert.equal(host.failed.length, 0);
});

test('E8: an unplug with nothing new still waits for the write-out carrying its chunk', async () => {
  const { devs, bm } = await make(1, 64);
  let release!: () => void;
  devs[0]!.hold = new Promise((r) => (release = r));
  await bm.startWrite(3 * CS, 512);
  const first = Promise.resolve(bm.unplug());
  // Same chunk: already Dirty, nothing to mark. Its data write must still wait for the block.
  await bm.startWrite(3 * CS + 512, 512);
  const second = Promise.resolve(bm.unplug());
  assert.equal(await settled(second), 'pending');
  devs[0]!.hold = null;
  release();
  await Promise.all([first, second]);
  assert.equal((await devs[0]!.durableChunks(3, 1))[0], State.Dirty);
  bm.endWrite(3 * CS, 512);
  bm.endWrite(3 * CS + 512, 512);
  await bm.close();
});

test('coalescing: 200 concurrent startWrite+unplug share at most two write-outs per member', async () => {
  const { devs, bm } = await make(2, 4096);
  const chunks = Array.from({ length: 200 }, (_, i) => (i * 37) % 4096);
  await Promise.all(
    chunks.map(async (c) => {
      await bm.startWrite(c * CS, 4096);
      await bm.unplug();
      bm.endWrite(c * CS, 4096);
    }),
  );
  for (const d of devs) {
    assert.ok(durablePoints(d) <= 2, `durability points ${durablePoints(d)}`);
    const durable = await d.durableChunks(0, 4096);
    for (const c of chunks) assert.notEqual(durable[c], State.Unwritten, `chunk ${c}`);
  }
  // Baseline: one at a time, each in its own bitmap block, every unplug is its own write-out.
  const { devs: devs2, bm: bm2 } = await make(1, 4096);
  for (let c = 0; c < 4096; c += 512) {
    await bm2.startWrite(c * CS, 4096);
    await bm2.unplug();
    bm2.endWrite(c * CS, 4096);
  }
  assert.equal(durablePoints(devs2[0]!), 8);
  await bm.close();
  await bm2.close();
});

test('unplug writes the dirty blocks, joined with the clean blocks between them into one FUA write when close', async () => {
  const { devs, bm } = await make(1, 4096);
  const before = await devs[0]!.live.read(8192, 8192);
  await bm.startWrite(0, 512); // block 2 (bytes 1024..1535)
  await bm.startWrite(3000 * CS, 512); // byte 4024 → page 0 block 7
  await bm.startWrite(3100 * CS, 512); // byte 4124 → page 1 block 0: contiguous with block 7
  await bm.startWrite(4000 * CS, 512); // byte 5024 → page 1 block 1
  await bm.unplug();
  const w = devs[0]!.writes;
  // Blocks 2..9 in one run: the clean blocks 3..6 are rewritten with the bytes they held.
  assert.deepEqual(
    w.map((x) => [x.offset - 8192, x.length, x.fua]),
    [[1024, 8 * 512, true]],
  );
  assert.equal(devs[0]!.flushes, 0, 'one run needs no cache flush');
  const after = await devs[0]!.live.read(8192, 8192);
  assert.deepEqual(after.subarray(1536, 3584), before.subarray(1536, 3584), 'clean blocks between hold what they held');
  assert.deepEqual(states(bm, 1, 1), [State.Unwritten]);
  for (const c of [0, 3000, 3100, 4000]) bm.endWrite(c * CS, 512);
  await bm.close();
});

test('unplug writes dirty blocks more than 16 KiB apart as separate runs, then one cache flush', async () => {
  const { devs, bm } = await make(1, 60000, { spaceBytes: 64 * KiB });
  await bm.startWrite(0, 512); // byte 1024: block 2
  await bm.startWrite(20000 * CS, 512); // byte 21024: block 41, 38 clean blocks (19 KiB) after block 2
  await bm.startWrite(20600 * CS, 512); // byte 21624: block 42, next to it
  await bm.unplug();
  const w = devs[0]!.writes;
  assert.deepEqual(
    w.map((x) => [x.offset - 8192, x.length, x.fua]),
    [
      [1024, 512, false],
      [20992, 2 * 512, false],
    ],
  );
  assert.equal(devs[0]!.flushes, 1);
  for (const c of [0, 20000, 20600]) bm.endWrite(c * CS, 512);
  await bm.close();
});

test('E8 / B-a: a write arriving while a flush waits for another write on its page is not held up, and never cleaned in flight', async () => {
  const { bm } = await make(1, 64, { barrierIdle: 0 });
  await bm.startWrite(0, 512); // in flight on page 0: the flush waits for it
  await bm.unplug();
  const daemon = bm.flush();
  await quiet();
  assert.equal(bm.stateOf(0), State.Dirty, 'cleaned with its write in flight');
  assert.equal(bm.startWrite(1 * CS, 512), undefined, 'the new write waited for the daemon');
  assert.equal(bm.stateOf(1), State.Dirty);
  bm.endWrite(0, 512);
  await quiet();
  assert.equal(bm.stateOf(0), State.Clean, 'the finished write was cleaned');
  assert.equal(bm.stateOf(1), State.Dirty, 'the new write is still in flight: not cleaned under it');
  await bm.unplug();
  bm.endWrite(1 * CS, 512);
  await daemon;
  assert.equal(bm.stateOf(1), State.Clean, 'the flush waited for it, then cleaned it');
  await bm.close();
});

test('E9: Dirty → Clean only once the chunk has been idle barrier_idle, at the next daemon timer', async (t) => {
  const clock = new VirtualClock(t);
  const { bm } = await make(1, 64, { barrierIdle: 1.5, daemonSleep: 1 });
  await bm.startWrite(0, 512);
  await bm.unplug();
  bm.endWrite(0, 512);
  await clock.advance(1200); // timer fired once: page not idle for 1.5 s yet
  assert.equal(bm.stateOf(0), State.Dirty, 'cleaned before barrier_idle');
  await clock.advance(700); // idle 1.9 s, but the next timer is at 2 s
  assert.equal(bm.stateOf(0), State.Dirty, 'cleaned between two daemon timers');
  await clock.advance(200); // the timer at 2 s cleans it
  assert.equal(bm.stateOf(0), State.Clean);
  await runOnClock(bm.close(), clock);
});

test('E9: per chunk: a write in flight keeps its own chunk Dirty, not its page; with nothing Dirty left no timer is armed', async (t) => {
  const clock = new VirtualClock(t);
  const { host, bm } = await make(1, 64, { barrierIdle: 1.5, daemonSleep: 1 });
  await bm.startWrite(0, 512);
  await bm.unplug();
  bm.endWrite(0, 512);
  await bm.startWrite(10 * CS, 512); // chunk 10 stays in flight, on the same page as chunk 0
  await clock.advance(2200); // the pass at 2 s: chunk 0 idle 2 s, chunk 10 in flight
  assert.equal(bm.stateOf(0), State.Clean, 'an idle chunk waits for a write in flight on another chunk of its page');
  assert.equal(bm.stateOf(10), State.Dirty, 'cleaned with its write in flight');
  bm.endWrite(10 * CS, 512); // at 2.2 s
  await clock.advance(1300); // the pass at 3 s: idle 0.8 s only
  assert.equal(bm.stateOf(10), State.Dirty, 'cleaned before barrier_idle after its write ended');
  await clock.advance(1500); // the pass at 4 s: idle 1.8 s
  assert.equal(bm.stateOf(10), State.Clean);
  // B-h: nothing Dirty left, so the timer is not re-armed: no further daemon passes, however long.
  const before = host.degradedCalls;
  await clock.advance(60_000);
  assert.equal(host.degradedCalls, before);
  await runOnClock(bm.close(), clock);
});

test('B-j: a write that never ends makes the daemon skip its page after daemon_sleep, not hang', async (t) => {
  const clock = new VirtualClock(t);
  const { bm } = await make(1, 64, { barrierIdle: 0, daemonSleep: 1 });
  await bm.startWrite(0, 512);
  await bm.unplug();
  await runOnClock(bm.flush(), clock);
  assert.equal(clock.now, 1000, 'flush waited daemon_sleep (1 s) for the write, and no longer');
  assert.equal(bm.stateOf(0), State.Dirty);
  // The page was resumed: writes go on.
  assert.ok(await settlesWithoutTime(Promise.resolve(bm.startWrite(2 * CS, 512))), 'a write on the skipped page waits for nothing');
  bm.endWrite(2 * CS, 512);
  bm.endWrite(0, 512);
  await runOnClock(bm.close(), clock);
});

test('B-j: close ends a daemon pass waiting on writes at once and arms nothing afterwards', async (t) => {
  const clock = new VirtualClock(t);
  const { host, bm } = await make(1, 64, { barrierIdle: 0, daemonSleep: 30 });
  await bm.startWrite(0, 512);
  await bm.unplug();
  const flushing = bm.flush();
  await settle();
  assert.ok(clock.delays.includes(30_000), 'the daemon pass waits up to daemon_sleep for the write');
  assert.ok(await settlesWithoutTime(bm.close()), 'close did not wait for the suspend');
  assert.ok(await settlesWithoutTime(flushing), 'the flush waiting on the page ended with close');
  assert.equal(clock.now, 0, 'no time passed');
  const before = host.degradedCalls;
  await (async () => bm.startWrite(0, 512))().catch(() => undefined);
  // Whatever timer is left runs now: none may start a daemon pass.
  while (clock.fireNext()) await settle();
  await settle();
  assert.equal(host.degradedCalls, before);
  bm.endWrite(0, 512);
});

test('A8: flush on stop leaves no Dirty bit on disk; reassembly resyncs nothing', async () => {
  const { devs, bm } = await make(2, 64);
  for (const c of [1, 2, 30, 63]) {
    await bm.startWrite(c * CS, 4096);
    await bm.unplug();
    bm.endWrite(c * CS, 4096);
  }
  await bm.flush();
  await bm.updateSb();
  await bm.close();
  for (const d of devs) assert.ok(!(await d.durableChunks(0, 64)).includes(State.Dirty), 'Dirty on disk');
  const host2 = new FakeHost(await crash(devs));
  const bm2 = await LlBitmap.load(host2, { ioSize: 512, syncSize: 64 * CS });
  assert.equal(bm2.counts().needSync, 0);
  assert.equal(bm2.counts().dirty, 0);
  assert.equal(bm2.counts().clean + bm2.counts().unwritten, 64);
  assert.ok(bm2.counts().clean >= 4, 'the written chunks are Clean');
  assert.equal(host2.syncRequests, 0);
  await bm2.close();
});

test('E10: with infect on (the kernel rule), a second dirtying in one block before unplug infects its Unwritten and Clean neighbours', async () => {
  const { bm } = await make(1, 2048, { assumeClean: false });
  bm.infect = true;
  // Chunks 0..511 are block 2 (bytes 1024..1535); 512.. are block 3.
  await bm.startWrite(100 * CS, 512);
  assert.deepEqual(states(bm, 99, 101), [State.Unwritten, State.Dirty, State.Unwritten]);
  await bm.startWrite(200 * CS, 512);
  for (let c = 0; c < 512; c++) assert.equal(bm.stateOf(c), State.Dirty, `chunk ${c}`);
  assert.equal(bm.stateOf(512), State.Unwritten, 'the next block is untouched');
  await bm.unplug();
  bm.endWrite(100 * CS, 512);
  bm.endWrite(200 * CS, 512);
  await bm.close();
});

test('E10: infect on a parity level turns Clean into Dirty; Unwritten into NeedSync only with the kernel rule', async () => {
  const { host, bm } = await make(1, 2048, { parity: true, assumeClean: true });
  await bm.startWrite(600 * CS, 512); // Clean → Dirty, block 3
  await bm.startWrite(601 * CS, 512); // block already dirty: infect
  for (let c = 512; c < 1024; c++) assert.equal(bm.stateOf(c), State.Dirty);
  assert.equal(bm.stateOf(511), State.Clean);
  await bm.unplug();
  bm.endWrite(600 * CS, 512);
  bm.endWrite(601 * CS, 512);
  await bm.close();
  // Default on parity levels: Unwritten neighbours stay Unwritten (no parity build for them).
  const lazy = await make(1, 2048, { parity: true });
  await lazy.bm.startWrite(0, 512);
  await lazy.bm.startWrite(CS, 512);
  assert.equal(lazy.bm.stateOf(0), State.NeedSync);
  assert.equal(lazy.bm.stateOf(1), State.NeedSync);
  assert.equal(lazy.bm.stateOf(300), State.Unwritten);
  lazy.bm.endWrite(0, 512);
  lazy.bm.endWrite(CS, 512);
  await lazy.bm.close();
  // The kernel's rule, on request: Unwritten → NeedSync across the block.
  const p = await make(1, 2048, { parity: true });
  p.bm.infectUnwritten = true;
  await p.bm.startWrite(0, 512);
  await p.bm.startWrite(CS, 512);
  assert.equal(p.bm.stateOf(300), State.NeedSync);
  assert.ok(p.host.syncRequests > 0, 'sync requested');
  p.bm.endWrite(0, 512);
  p.bm.endWrite(CS, 512);
  await p.bm.close();
  assert.equal(host.failed.length, 0);
});

test('E10: no infect when the block was written between the two dirtyings, or while degraded', async () => {
  const { host, bm } = await make(1, 2048);
  await bm.startWrite(10 * CS, 512);
  await bm.unplug();
  bm.endWrite(10 * CS, 512);
  await bm.flush(); // 10 → Clean, block written
  await bm.startWrite(11 * CS, 512);
  assert.equal(bm.stateOf(12), State.Unwritten);
  await bm.unplug();
  bm.endWrite(11 * CS, 512);
  host.degraded = true;
  await bm.startWrite(20 * CS, 512);
  await bm.startWrite(21 * CS, 512);
  assert.deepEqual(states(bm, 19, 22), [State.Unwritten, State.NeedSync, State.NeedSync, State.Unwritten]);
  bm.endWrite(20 * CS, 512);
  bm.endWrite(21 * CS, 512);
  await bm.close();
});

test('E7: discard makes fully covered chunks Unwritten and leaves partial ones (B-b)', async () => {
  const { bm } = await make(1, 16, { assumeClean: true });
  // [1.5 chunks, 5.5 chunks): chunks 2, 3, 4 fully covered; 1 and 5 partially.
  const off = CS + CS / 2;
  const len = 4 * CS;
  await bm.startDiscard(off, len);
  bm.endDiscard(off, len);
  assert.deepEqual(states(bm, 0, 6), [State.Clean, State.Clean, State.Unwritten, State.Unwritten, State.Unwritten, State.Clean, State.Clean]);
  // A discard inside one chunk changes nothing.
  await bm.startDiscard(8 * CS + 512, CS - 1024);
  bm.endDiscard(8 * CS + 512, CS - 1024);
  assert.equal(bm.stateOf(8), State.Clean);
  // Exactly aligned, and to the end of the space.
  await bm.startDiscard(14 * CS, 2 * CS);
  bm.endDiscard(14 * CS, 2 * CS);
  assert.deepEqual(states(bm, 13, 15), [State.Clean, State.Unwritten, State.Unwritten]);
  await bm.close();
});

test('E7: a discard reaching the end of the space covers a short last chunk', async () => {
  const devs = devices(1);
  const bm = await LlBitmap.create(new FakeHost(devs), { ioSize: 512, syncSize: 3 * CS + 4096, spaceBytes: 8 * KiB, assumeClean: true });
  assert.equal(bm.chunks, 4);
  await bm.startDiscard(3 * CS, 4096);
  bm.endDiscard(3 * CS, 4096);
  assert.equal(bm.stateOf(3), State.Unwritten);
  await bm.startDiscard(2 * CS, 4096);
  bm.endDiscard(2 * CS, 4096);
  assert.equal(bm.stateOf(2), State.Clean);
  // B-k: the sync step in the short last chunk stops at the end of the space.
  assert.deepEqual(bm.startSync(3 * CS + 512), { sync: false, length: 4096 - 512 });
  await bm.close();
});

test('B-c: a checkpoint ends sync only on chunks entirely below it', async () => {
  const { devs, bm } = await make(1, 16);
  for (let c = 0; c < 16; c++) await bm.startWrite(c * CS, 512);
  for (let c = 0; c < 16; c++) bm.endWrite(c * CS, 512);
  await bm.unplug();
  // Reassembled after a crash: every chunk NeedSync.
  const bm2 = await LlBitmap.load(new FakeHost(await crash(devs)), { ioSize: 512, syncSize: 16 * CS });
  for (let c = 0; c < 8; c++) bm2.startSync(c * CS);
  await bm2.condEndSync(7 * CS + 4096);
  assert.deepEqual(states(bm2, 0, 8), [...new Array(7).fill(State.Dirty), State.Syncing, State.NeedSync]);
  await bm2.condEndSync(8 * CS); // exactly on a boundary: chunk 7 is entirely below
  assert.equal(bm2.stateOf(7), State.Dirty);
  await bm2.close();
  await bm.close();
});

test('E12: abort: Syncing at or after the stop point → NeedSync; earlier chunks → Dirty → Clean', async () => {
  const { devs, bm } = await make(1, 16, { barrierIdle: 0 });
  for (let c = 0; c < 16; c++) {
    await bm.startWrite(c * CS, 512);
    bm.endWrite(c * CS, 512);
  }
  await bm.unplug();
  const bm2 = await LlBitmap.load(new FakeHost(await crash(devs)), { ioSize: 512, syncSize: 16 * CS, barrierIdle: 0 });
  for (let c = 0; c < 10; c++) assert.equal(bm2.startSync(c * CS).sync, true);
  const stop = 6 * CS + 8192;
  await bm2.condEndSync(stop);
  bm2.endSync(stop);
  assert.deepEqual(states(bm2, 0, 15), [...new Array(6).fill(State.Dirty), ...new Array(10).fill(State.NeedSync)]);
  await bm2.flush();
  assert.deepEqual(states(bm2, 0, 6), [...new Array(6).fill(State.Clean), State.NeedSync]);
  await bm2.close();
  await bm.close();
});

test('¶ startSync answers true for every window inside a chunk being synced', async () => {
  const { devs, bm } = await make(1, 4);
  await bm.startWrite(0, 512);
  bm.endWrite(0, 512);
  await bm.unplug();
  const bm2 = await LlBitmap.load(new FakeHost(await crash(devs)), { ioSize: 512, syncSize: 4 * CS });
  assert.deepEqual(bm2.startSync(0), { sync: true, length: CS });
  assert.deepEqual(bm2.startSync(16 * KiB), { sync: true, length: CS - 16 * KiB });
  assert.deepEqual(bm2.startSync(CS), { sync: false, length: CS });
  await bm2.close();
  await bm.close();
});

test('skip rules: Unwritten and CleanUnwritten always; Clean and Dirty only in a plain resync; degraded nothing else', async () => {
  const { host, bm } = await make(1, 8, { parity: true, assumeClean: true });
  await bm.startWrite(CS, 512); // chunk 1 Dirty
  bm.endWrite(CS, 512);
  await bm.startDiscard(3 * CS, CS); // chunk 3 Unwritten, then proactively synced: CleanUnwritten
  bm.endDiscard(3 * CS, CS);
  bm.proactiveSync();
  bm.startSync(3 * CS);
  bm.closeSync();
  await bm.startDiscard(0, CS); // chunk 0 Unwritten; chunk 2 stays Clean
  bm.endDiscard(0, CS);
  assert.deepEqual(states(bm, 0, 3), [State.Unwritten, State.Dirty, State.Clean, State.CleanUnwritten]);
  const at = (c: number, mode?: 'resync' | 'recovery' | 'check' | 'repair') => bm.skipSyncBlocks(c * CS + 512, mode);
  // The answer runs to the end of the skippable chunks: `chunks` of them from the offset's.
  const run = (chunks: number) => chunks * CS - 512;
  // Chunks 4..7 are Clean (assume-clean), so a plain resync skips through to the end.
  assert.equal(at(0, 'resync'), run(8));
  assert.equal(at(1, 'resync'), run(7));
  assert.equal(at(2, 'resync'), run(6));
  assert.equal(at(3, 'resync'), run(5));
  for (const mode of ['recovery', 'check', 'repair', undefined] as const) {
    assert.equal(at(0, mode), run(1), 'Unwritten, then Dirty stops the run');
    assert.equal(at(3, mode), run(1), 'CleanUnwritten, then Clean stops the run');
    assert.equal(at(1, mode), 0);
    assert.equal(at(2, mode), 0);
  }
  host.degraded = true;
  assert.equal(at(0, 'resync'), run(1));
  assert.equal(at(3, 'resync'), run(1));
  assert.equal(at(1, 'resync'), 0);
  assert.equal(at(2, 'resync'), 0);
  await bm.close();
});

test('E4 at bitmap level: degraded writes go NeedSync with no sync request; Dirty is kept; the re-add syncs both', async () => {
  const { host, bm } = await make(1, 16, { assumeClean: true, barrierIdle: 0 });
  await bm.startWrite(1 * CS, 512);
  bm.endWrite(1 * CS, 512); // Dirty before the member left
  host.degraded = true;
  host.syncRequests = 0;
  await bm.startWrite(5 * CS, 512);
  bm.endWrite(5 * CS, 512);
  assert.equal(bm.stateOf(5), State.NeedSync);
  assert.equal(host.syncRequests, 0);
  await bm.flush(); // ‡ the daemon does not clear Dirty while degraded
  assert.equal(bm.stateOf(1), State.Dirty);
  // The member comes back: recovery guided by startSync.
  host.degraded = false;
  const synced = [];
  for (let c = 0; c < 16; c++) if (bm.skipSyncBlocks(c * CS, 'recovery') === 0 && bm.startSync(c * CS).sync) synced.push(c);
  assert.deepEqual(synced, [5]);
  // † while still degraded (re-add in progress), Dirty is synced too.
  host.degraded = true;
  assert.equal(bm.startSync(1 * CS).sync, true);
  await bm.close();
});

test('E13: proactive sync builds parity for Unwritten chunks; a write then goes Dirty; recovery start reverts *Unwritten', async () => {
  const { host, bm } = await make(1, 8, { parity: true });
  bm.proactiveSync();
  assert.deepEqual(states(bm, 0, 7), new Array(8).fill(State.NeedSyncUnwritten));
  assert.ok(host.syncRequests > 0, 'sync requested');
  await bm.unplug();
  assert.equal(bm.isUnwritten(CS), true);
  assert.equal(bm.blocksSynced(CS), false);
  assert.deepEqual(bm.startSync(CS), { sync: true, length: CS });
  assert.equal(bm.stateOf(1), State.SyncingUnwritten);
  assert.equal(bm.startSync(2 * CS).sync, true);
  bm.endSync(3 * CS); // stopped at chunk 3: *Unwritten → Unwritten from there
  bm.closeSync();
  assert.deepEqual(states(bm, 0, 4), [
    State.NeedSyncUnwritten, State.CleanUnwritten, State.CleanUnwritten, State.Unwritten, State.Unwritten,
  ]);
  assert.equal(bm.blocksSynced(CS), true, 'parity is valid');
  assert.equal(bm.isUnwritten(CS), true, 'still no data');
  await bm.startWrite(2 * CS, 512);
  bm.endWrite(2 * CS, 512);
  assert.equal(bm.stateOf(2), State.Dirty);
  assert.equal(bm.stateOf(1), State.CleanUnwritten);
  bm.startRecovery();
  assert.deepEqual(states(bm, 0, 2), [State.Unwritten, State.Unwritten, State.Dirty]);
  await bm.close();
});

test('a write asks for the lazy parity build at endWrite, and not at all once it built the parity itself', async () => {
  const { host, bm } = await make(1, 8, { parity: true });
  const before = host.syncRequests;
  await bm.startWrite(0, 512); // Unwritten → NeedSync
  await bm.unplug();
  assert.equal(bm.stateOf(0), State.NeedSync);
  assert.equal(host.syncRequests, before, 'not while the write is in flight');
  bm.endWrite(0, 512);
  assert.equal(host.syncRequests, before + 1, 'its chunk still owes parity');
  await bm.startWrite(CS, CS);
  await bm.unplug();
  bm.paritySynced(CS, CS); // a reconstruct-write over the whole chunk
  bm.endWrite(CS, CS);
  assert.equal(bm.stateOf(1), State.Dirty);
  assert.equal(host.syncRequests, before + 1, 'nothing owed: no request');
  await bm.close();
});

test('paritySynced: NeedSync and Syncing chunks a range covers wholly go Dirty in memory; nothing else changes', async () => {
  const { devs, host, bm } = await make(1, 8, { parity: true });
  for (const c of [0, 1, 2, 3, 4]) await bm.startWrite(c * CS, 512); // Unwritten → NeedSync
  await bm.unplug();
  assert.deepEqual(bm.startSync(CS), { sync: true, length: CS }); // chunk 1 Syncing
  bm.proactiveSync(); // chunks 5..7: Unwritten → NeedSyncUnwritten
  await bm.unplug();
  const writes = devs[0]!.writes.length;
  // Covers chunk 0 from its second half (partly), chunks 1..3 wholly, chunk 4 partly; and 5..7.
  bm.paritySynced(CS / 2, 4 * CS);
  bm.paritySynced(5 * CS, 3 * CS);
  assert.deepEqual(states(bm, 0, 7), [
    State.NeedSync, State.Dirty, State.Dirty, State.Dirty, State.NeedSync,
    State.NeedSyncUnwritten, State.NeedSyncUnwritten, State.NeedSyncUnwritten,
  ]);
  assert.equal(bm.startSync(CS).sync, false, 'a pass syncing chunk 1 stops there');
  assert.equal(bm.skipSyncBlocks(2 * CS, 'resync'), 2 * CS, 'and passes over 2 and 3');
  assert.equal(devs[0]!.writes.length, writes, 'kept in memory: the disk still says NeedSync');
  bm.endSync(CS); // an abort over them leaves them Dirty: their parity is valid
  assert.deepEqual(states(bm, 1, 3), [State.Dirty, State.Dirty, State.Dirty]);
  host.degraded = true;
  bm.paritySynced(0, CS);
  assert.equal(bm.stateOf(0), State.NeedSync, 'degraded: NeedSync also means data a missing member lacks');
  host.degraded = false;
  for (const c of [0, 1, 2, 3, 4]) bm.endWrite(c * CS, 512);
  await bm.close();

  // Without parity NeedSync means a copy to bring up to date, which no write does.
  const mirror = await make(1, 4);
  mirror.host.degraded = true;
  await mirror.bm.startWrite(0, 512);
  mirror.bm.endWrite(0, 512);
  mirror.host.degraded = false;
  mirror.bm.paritySynced(0, 4 * CS);
  assert.equal(mirror.bm.stateOf(0), State.NeedSync);
  await mirror.bm.close();
});

test('E13: proactive sync on a level without parity is refused with ENOTSUP and changes nothing', async () => {
  const { bm } = await make(1, 8);
  assert.throws(
    () => bm.proactiveSync(),
    (e: unknown) => e instanceof MdError && e.code === 'ENOTSUP' && /expected a raid4\/5\/6 array/.test(e.message),
  );
  assert.equal(bm.counts().unwritten, 8);
  await bm.close();
});

test('a write during proactive sync of its chunk is persisted before unplug resolves (never reloads as a hole)', async () => {
  const { devs, bm } = await make(1, 8, { parity: true });
  bm.proactiveSync();
  await bm.unplug();
  bm.startSync(0); // SyncingUnwritten
  await bm.startWrite(512, 512); // → Syncing
  await bm.unplug();
  const bm2 = await LlBitmap.load(new FakeHost(await crash(devs), true), { ioSize: 512, syncSize: 8 * CS });
  assert.equal(bm2.stateOf(0), State.NeedSync);
  assert.equal(bm2.isUnwritten(0), false);
  bm.endWrite(512, 512);
  await bm2.close();
  await bm.close();
});

test('close resolves only after write-outs in flight, including one started while closing', async () => {
  const { devs, bm } = await make(1, 64);
  let release!: () => void;
  devs[0]!.hold = new Promise((r) => (release = r));
  await bm.startWrite(0, 512);
  const first = Promise.resolve(bm.unplug());
  const closing = bm.close();
  await (async () => bm.startWrite(CS, 512))().catch(() => undefined); // refused: closing
  assert.equal(await settled(closing), 'pending');
  devs[0]!.hold = null;
  release();
  await Promise.all([first, closing]);
  const writes = devs[0]!.writes.length;
  await sleep(20);
  assert.equal(devs[0]!.writes.length, writes, 'no bitmap I/O after close');
  bm.endWrite(0, 512);
});

test('the daemon does not hold up writers on a page with nothing to clean', async (t) => {
  const clock = new VirtualClock(t);
  const { bm } = await make(1, 7000, { barrierIdle: 0, daemonSleep: 1, assumeClean: true });
  assert.equal(bm.chunkSize, CS);
  // A discard in flight on page 1 (chunk 4000): it changes nothing to Dirty there.
  await bm.startDiscard(4000 * CS, CS);
  assert.ok(await settlesWithoutTime(bm.flush()), 'flush did not wait for the discard');
  assert.equal(clock.now, 0);
  bm.endDiscard(4000 * CS, CS);
  await runOnClock(bm.close(), clock);
});
