// The llbitmap daemon per chunk (chunk-activity.ts, docs/architecture.md "The llbitmap daemon
// without page barriers"): a chunk with no write in flight that has been idle for barrier_idle is
// cleaned on its own, even on a page that is never idle as a whole, and the ordering invariants
// still hold: after a power cut at any moment, every chunk whose copies differ is marked, and on a
// mirror (no infect) nothing is marked that the run did not write.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { LlBitmap, State, MIN_CHUNK_SIZE } from '../../src/md/llbitmap/index.js';
import { assembleArray, createArray } from '../../src/md/index.js';
import { FaultDevice, PowerDomain, type CutMode } from '../../src/block/fault-device.js';
import { MemoryDevice } from '../../src/block/memory-device.js';
import { devices, FakeHost } from './llbitmap-fixtures.js';
import { runOnClock, VirtualClock } from '../support/virtual-clock.js';
import { scaled } from '../support/long-mode.js';
import { propertySeed, runProperty } from '../support/property-run.js';

const CS = MIN_CHUNK_SIZE; // 64 KiB
const KIB = 1024;
const MIB = 1024 * KIB;

test('a page that is never idle as a whole: the daemon cleans its idle chunks one by one', async (t) => {
  const clock = new VirtualClock(t);
  const host = new FakeHost(devices(1));
  // 3000 chunks: all on page 0, the page Linux would clean only when no write touched it for barrier_idle.
  const bm = await LlBitmap.create(host, { ioSize: 512, syncSize: 3000 * CS, spaceBytes: 8 * KIB, barrierIdle: 1, daemonSleep: 1 });
  let seed = 1;
  const next = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) % 3000;
  const lastWrite = new Map<number, number>();
  // 10 s of a write every 50 ms to a random chunk, each in flight for 30 ms: at every moment of
  // the run the page has a write in flight or one that ended less than 20 ms ago.
  for (let tick = 0; tick < 200; tick++) {
    const c = next();
    assert.equal(bm.startWrite(c * CS, 4096), undefined, 'a write waited for the daemon');
    await bm.unplug(c * CS, 4096);
    await clock.advance(30);
    bm.endWrite(c * CS, 4096);
    lastWrite.set(c, clock.now);
    await clock.advance(20);
  }
  const counts = bm.counts();
  // Cleaned: every chunk idle for barrier_idle at the last daemon pass (at 10 s).
  const recent = [...lastWrite].filter(([, at]) => at > 10_000 - 1000).length;
  assert.ok(counts.dirty <= recent + 20, `dirty ${counts.dirty}, written in the last 2 s: ${recent}`);
  assert.equal(counts.clean + counts.dirty, lastWrite.size);
  assert.ok(counts.dirty > 0 && counts.clean >= lastWrite.size - recent - 20, `clean ${counts.clean}, dirty ${counts.dirty} of ${lastWrite.size} written`);
  for (const [c, at] of lastWrite) {
    if (at <= 10_000 - 2000) assert.equal(bm.stateOf(c), State.Clean, `chunk ${c}, last written at ${at} ms`);
  }
  await runOnClock(bm.close(), clock);
});

test('raid1 does not infect: a second write in a block marks its own chunk only', async () => {
  const host = new FakeHost(devices(1));
  const bm = await LlBitmap.create(host, { ioSize: 512, syncSize: 2048 * CS, spaceBytes: 8 * KIB, assumeClean: true });
  for (const c of [100, 200, 300]) bm.startWrite(c * CS, 512);
  const counts = bm.counts();
  assert.equal(counts.dirty, 3);
  assert.equal(counts.clean, 2045);
  for (const c of [100, 200, 300]) bm.endWrite(c * CS, 512);
  await bm.close();
});

// ---------------------------------------------------------------- the ordering property

const DATA_OFFSET = MIB;
const BITMAP_STATES = 4096 + 8 * 512 + 1024;
const MEMBER_DATA = 16 * MIB; // 256 chunks: one bitmap page, one that busy writes never leave idle
const CHUNKS = MEMBER_DATA / CS;
const MARKED = new Set<number>([State.Dirty, State.NeedSync, State.Syncing]);

type Op = { t: 'write'; chunk: number; at: number; sectors: number; wait: boolean } | { t: 'daemon' } | { t: 'flush' } | { t: 'tick' };

interface Case {
  ops: Op[];
  cutAfter: number;
  mode: CutMode;
  seed: number;
}

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 8,
    arbitrary: fc.record({
      t: fc.constant('write' as const),
      // A few hot chunks (rewritten, in flight together) and the rest of the page.
      chunk: fc.oneof(fc.integer({ min: 0, max: 7 }), fc.integer({ min: 0, max: CHUNKS - 1 })),
      at: fc.integer({ min: 0, max: CS / 512 - 8 }),
      sectors: fc.integer({ min: 1, max: 8 }),
      wait: fc.boolean(),
    }),
  },
  { weight: 3, arbitrary: fc.constant({ t: 'daemon' as const }) },
  { weight: 1, arbitrary: fc.constant({ t: 'flush' as const }) },
  { weight: 2, arbitrary: fc.constant({ t: 'tick' as const }) },
);

async function runCase(c: Case): Promise<{ differing: number; marked: number; written: number; cleanedBusy: number }> {
  const power = new PowerDomain({ seed: c.seed, mode: c.mode });
  const inner = [0, 1].map(() => new MemoryDevice(DATA_OFFSET + MEMBER_DATA));
  const array = await createArray({
    name: 'chunk-daemon', level: 1, members: inner.map((d, i) => ({ name: `m${i}`, device: new FaultDevice(d, power, `m${i}`) })),
    // barrier_idle 0: every daemon pass cleans whatever chunk has no write in flight.
    barrierIdle: 0, daemonSleep: 600,
  });
  const bm = array.bitmap as LlBitmap;
  assert.equal(bm.chunkSize, CS);
  const written = new Set<number>();
  const pending: Promise<unknown>[] = [];
  let cleanedBusy = 0;
  power.cutAfterWrites(c.cutAfter);
  let gen = 0;
  for (const op of c.ops) {
    if (power.isCut) break;
    if (op.t === 'write') {
      written.add(op.chunk);
      const data = Buffer.alloc(op.sectors * 512, ++gen);
      const w = array.write(op.chunk * CS + op.at * 512, data).catch(() => undefined);
      if (op.wait) await w;
      else pending.push(w);
    } else if (op.t === 'daemon') {
      // A pass while other writes are in flight on the same page: count the chunks it cleans then.
      const before = bm.counts().clean;
      const busy = pending.length > 0;
      await bm.runDaemon();
      if (busy && bm.counts().clean > before) cleanedBusy++;
    } else if (op.t === 'flush') {
      pending.push(array.flush().catch(() => undefined));
    } else {
      await new Promise((r) => setImmediate(r));
    }
  }
  await Promise.allSettled(pending);
  await power.cut();
  await array.abandon().catch(() => undefined);

  // What the members hold at the cut: data copies and both bitmap copies.
  const [a, b] = await Promise.all(inner.map((d) => d.read(DATA_OFFSET, MEMBER_DATA)));
  const bitmaps = await Promise.all(inner.map((d) => d.read(BITMAP_STATES, CHUNKS)));
  let differing = 0;
  let marked = 0;
  for (let ch = 0; ch < CHUNKS; ch++) {
    const isMarked = bitmaps.some((s) => MARKED.has(s[ch]!));
    if (isMarked) {
      marked++;
      assert.ok(written.has(ch), `chunk ${ch} marked at the cut but never written (raid1 has no infect)`);
    }
    if (!a!.subarray(ch * CS, (ch + 1) * CS).equals(b!.subarray(ch * CS, (ch + 1) * CS))) {
      differing++;
      assert.ok(isMarked, `chunk ${ch}: the copies differ after the cut but no bitmap copy marks it ` +
        `(states ${bitmaps.map((s) => s[ch]).join(', ')})`);
    }
  }
  // And the resync the reassembly runs makes them identical.
  const { array: again } = await assembleArray({ members: inner.map((device, i) => ({ name: `m${i}`, device })) });
  await again.waitSync();
  await again.stop();
  const [x, y] = await Promise.all(inner.map((d) => d.read(DATA_OFFSET, MEMBER_DATA)));
  assert.ok(x!.equals(y!), 'the copies differ after the resync');
  return { differing, marked, written: written.size, cleanedBusy };
}

const FILE = 'test/md/llbitmap-chunk-daemon.test.ts';

/**
 * Cases that once caught a daemon cleaning a chunk with its write in flight (the count per chunk
 * left out): the write to chunk 1 waits for its bitmap block, the pass cleans chunk 1 in memory,
 * the write to chunk 0 carries that Clean to disk before chunk 1's data is, and the cut comes.
 */
const REGRESSIONS: Case[] = [
  {
    ops: [{ t: 'write', chunk: 1, at: 0, sectors: 1, wait: false }, { t: 'daemon' }, { t: 'write', chunk: 0, at: 0, sectors: 1, wait: false }],
    cutAfter: 4, mode: 'random', seed: 15,
  },
];

test('raid1, daemon cleaning chunk by chunk among writes in flight, a power cut anywhere: every chunk whose copies differ is marked, nothing unwritten is', async () => {
  const total = { cases: 0, differing: 0, marked: 0, written: 0, cleanedBusy: 0 };
  await runProperty({
    name: 'per-chunk daemon power cut',
    file: FILE,
    seed: propertySeed(FILE),
    stream: 1,
    numRuns: scaled(40, 2_000, 'LLRAID_PROPERTY_RUNS'),
    property: fc.asyncProperty(
      fc.record({ ops: fc.array(opArb, { minLength: 1, maxLength: 60 }), cutAfter: fc.nat(120), mode: fc.constantFrom<CutMode>('drop', 'keep', 'random'), seed: fc.nat() }),
      async (c) => {
        const r = await runCase(c);
        total.cases++;
        total.differing += r.differing;
        total.marked += r.marked;
        total.written += r.written;
        total.cleanedBusy += r.cleanedBusy;
      },
    ),
    examples: REGRESSIONS.map((c): [Case] => [c]),
  });
  console.log(`per-chunk daemon: ${total.cases} cases, ${total.cleanedBusy} daemon passes cleaned chunks with writes in flight on their page, ` +
    `${total.differing} chunks differing at the cut (all marked), ${total.marked} marked of ${total.written} written`);
  assert.ok(total.cleanedBusy > 0, 'no daemon pass cleaned a chunk while writes were in flight on its page');
  assert.ok(total.differing > 0, 'no cut left the copies differing');
  assert.ok(total.marked <= total.written, 'marked more chunks than were written');
});

test('a crash after a completed resync, once the daemon has run, resyncs nothing of what was synced', async () => {
  // Endsync leaves synced chunks Dirty for the daemon; it cleans them in memory, and its pass
  // writes those pages, so the Clean state is on disk before the next crash.
  const mem = [new MemoryDevice(64 * MIB), new MemoryDevice(64 * MIB)];
  const members = mem.map((device, i) => ({ name: `m${i}`, device }));
  const array = await createArray({ name: 'again', level: 1, members, daemonSleep: 1, barrierIdle: 1 });
  for (let i = 0; i < 16; i++) await array.write(i * MIB, Buffer.alloc(MIB, i + 1));
  await array.abandon();
  const marked: number[] = [];
  for (let round = 0; round < 3; round++) {
    const { array: again } = await assembleArray({ members, barrierIdle: 1 });
    const c = again.status().bitmap.counts;
    marked.push(c.needSync + c.dirty + c.syncing);
    await again.waitSync();
    // The daemon's pass after the sync (daemon_sleep 1 s, barrier_idle 1 s).
    await new Promise((r) => setTimeout(r, 2500));
    await again.abandon();
  }
  assert.equal(marked[0], 16 * MIB / CS, 'the first crash marks what was written');
  assert.deepEqual(marked.slice(1), [0, 0], 'later crashes find the synced region Clean on disk');
});
