// Property test of the md engine's crash promise (issue 2, llbitmap.md A4/E2/E8): random writes,
// discards, flushes and daemon passes on raid1 (2, 3 members) and raid10 near=2 (4, 3 members)
// with llbitmap over FaultDevice members sharing one PowerDomain, a power cut at a random moment,
// then reassembly from what the members hold and the bitmap-guided resync. An oracle checks:
//   (a) every copy of every sector is identical after the resync;
//   (b) every write acknowledged with FUA, or acknowledged before an acknowledged flush was
//       issued, reads back — unless a later write (landed or not) may have replaced it;
//   (c) the resync touched only chunks that were Dirty/NeedSync/Syncing (or corrupt) on some
//       member at the cut, or lie in a gap of at most BRIDGE bytes between two such chunks (read
//       with them in one window, sync-thread.ts), and every chunk that was so on every member.
// One property per level, 30 cases each (2,500 each in long mode, test/support/long-mode.ts;
// LLRAID_PROPERTY_RUNS sets the count per level). The file prints its seed before the first case
// and the cases run per level and geometry; LLRAID_PROPERTY_SEED (and LLRAID_PROPERTY_PATH, from a
// failure report) replay a run (test/support/property-run.ts).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { assembleArray, createArray, type MdArray } from '../../src/md/index.js';
import { FaultDevice, PowerDomain, type CutMode } from '../../src/block/fault-device.js';
import { MemoryDevice } from '../../src/block/memory-device.js';
import { RecordingDevice } from '../support/recording-device.js';
import { BRIDGE } from '../../src/md/sync-thread.js';
import { scaled } from '../support/long-mode.js';
import { PATH_ENV, propertySeed, runProperty } from '../support/property-run.js';

const SECTOR = 512;
const KIB = 1024;
const MIB = 1024 * KIB;
/** mdadm layout used by createArray: superblock at 4 KiB, bitmap 8 sectors later, data at 1 MiB. */
const DATA_OFFSET = MIB;
const BITMAP_STATES = 4096 + 8 * SECTOR + 1024;
const BITMAP_CHUNK = 64 * KIB;
/** Member data area: 64 MiB gives 1024+ bitmap chunks, so several 512-byte bitmap blocks. */
const MEMBER_DATA = 64 * MIB;
/** llbitmap states (llbitmap.md A3) that reload as "needs a resync". */
const DIRTY = 2;
const NEED_SYNC = 3;
const SYNCING = 4;
const STATE_COUNT = 8;

interface Geometry {
  label: string;
  level: 1 | 10;
  members: number;
  /** raid10 stripe chunk in bytes (0 for raid1). */
  chunk: number;
}

const GEOMETRIES: Geometry[] = [
  { label: 'raid1 x2', level: 1, members: 2, chunk: 0 },
  { label: 'raid1 x3', level: 1, members: 3, chunk: 0 },
  { label: 'raid10 n2 x4', level: 10, members: 4, chunk: 64 * KIB },
  { label: 'raid10 n2 x3', level: 10, members: 3, chunk: 128 * KIB },
];

type Op =
  | { t: 'write'; sector: number; sectors: number; fua: boolean }
  | { t: 'discard'; sector: number; sectors: number }
  | { t: 'flush' }
  | { t: 'daemon' }
  | { t: 'wait' };

interface Case {
  geometry: number;
  ops: Op[];
  /** Member writes (domain-wide) before the cut; beyond the workload's writes, the cut comes at the end. */
  cutAfter: number;
  mode: CutMode;
  seed: number;
}

/** An independent model of where each array byte lives: md's near layout, raid1 as one row. */
function copiesOf(g: Geometry, arrayOffset: number): { member: number; offset: number }[] {
  if (g.level === 1) return Array.from({ length: g.members }, (_, m) => ({ member: m, offset: arrayOffset }));
  const chunk = Math.floor(arrayOffset / g.chunk);
  const within = arrayOffset % g.chunk;
  return [0, 1].map((k) => {
    const s = chunk * 2 + k;
    return { member: s % g.members, offset: Math.floor(s / g.members) * g.chunk + within };
  });
}

/** The array address a member data byte holds (inverse of copiesOf). */
function arrayOffsetOf(g: Geometry, member: number, memberOffset: number): number {
  if (g.level === 1) return memberOffset;
  const row = Math.floor(memberOffset / g.chunk);
  return Math.floor((row * g.members + member) / 2) * g.chunk + (memberOffset % g.chunk);
}

function arraySize(g: Geometry): number {
  return g.level === 1 ? MEMBER_DATA : Math.floor(((MEMBER_DATA / g.chunk) * g.members) / 2) * g.chunk;
}

/** Write `id` fills each sector with (id, sector) words, so every sector of every write differs. */
function writeData(id: number, firstSector: number, sectors: number): Buffer {
  const b = Buffer.alloc(sectors * SECTOR);
  for (let s = 0; s < sectors; s++) {
    for (let w = 0; w < SECTOR; w += 8) {
      b.writeUInt32LE(id + 1, s * SECTOR + w);
      b.writeUInt32LE(firstSector + s, s * SECTOR + w + 4);
    }
  }
  return b;
}

interface Timed {
  issue: number;
  ack: number | null;
}
interface WriteRec extends Timed {
  sector: number;
  sectors: number;
  fua: boolean;
  data: Buffer;
}
interface DiscardRec extends Timed {
  sector: number;
  sectors: number;
}

const ZERO_SECTOR = Buffer.alloc(SECTOR);

/**
 * The oracle of (b): for each sector, the values it may hold after the cut, or `undefined` when a
 * discard left it unspecified. A write W is durable when acknowledged with FUA or acknowledged
 * before an acknowledged flush was issued. Anything acknowledged at t (the initial zeroes at 0) is
 * certainly replaced once a durable write to the sector was issued after t; everything else — a
 * write never acknowledged, or one racing a durable write — may be what the sector holds.
 */
class Oracle {
  private readonly bySector = new Map<number, WriteRec[]>();
  private readonly discarded = new Map<number, DiscardRec[]>();
  /** Per sector: the latest issue time of a durable write to it. */
  private readonly lastDurable = new Map<number, number>();

  constructor(writes: WriteRec[], discards: DiscardRec[], flushes: Timed[]) {
    const lastFlushIssue = flushes.filter((f) => f.ack !== null).reduce((m, f) => Math.max(m, f.issue), -1);
    for (const w of writes) {
      const durable = w.ack !== null && (w.fua || lastFlushIssue > w.ack);
      for (let s = w.sector; s < w.sector + w.sectors; s++) {
        push(this.bySector, s, w);
        if (durable) this.lastDurable.set(s, Math.max(this.lastDurable.get(s) ?? -1, w.issue));
      }
    }
    for (const d of discards) for (let s = d.sector; s < d.sector + d.sectors; s++) push(this.discarded, s, d);
  }

  acceptable(sector: number): Buffer[] | undefined {
    const last = this.lastDurable.get(sector) ?? -1;
    const replaced = (t: number | null) => t !== null && last > t;
    if ((this.discarded.get(sector) ?? []).some((d) => !replaced(d.ack))) return undefined;
    const out: Buffer[] = [];
    if (!replaced(0)) out.push(ZERO_SECTOR);
    for (const w of this.bySector.get(sector) ?? []) {
      if (!replaced(w.ack)) out.push(w.data.subarray((sector - w.sector) * SECTOR, (sector - w.sector + 1) * SECTOR));
    }
    return out;
  }
}

function push<K, V>(m: Map<K, V[]>, k: K, v: V): void {
  const list = m.get(k);
  if (list === undefined) m.set(k, [v]);
  else list.push(v);
}

/** Sorted sectors → runs [first, end) that stay inside one stripe chunk (so copies are contiguous). */
function runsOf(sectors: number[], g: Geometry): [number, number][] {
  const limit = (g.chunk || 256 * KIB) / SECTOR;
  const runs: [number, number][] = [];
  for (const s of sectors) {
    const last = runs[runs.length - 1];
    if (last !== undefined && last[1] === s && Math.floor(last[0] / limit) === Math.floor(s / limit)) last[1] = s + 1;
    else runs.push([s, s + 1]);
  }
  return runs;
}

/** Chunks in a run of at most BRIDGE bytes of unmarked chunks between two marked ones. */
function bridgedGaps(marked: Set<number>, chunks: number): Set<number> {
  const out = new Set<number>();
  const sorted = [...marked].sort((x, y) => x - y);
  for (let i = 1; i < sorted.length; i++) {
    const gap = sorted[i]! - sorted[i - 1]! - 1;
    if (gap > 0 && gap * BITMAP_CHUNK <= BRIDGE) for (let c = sorted[i - 1]! + 1; c < sorted[i]! && c < chunks; c++) out.add(c);
  }
  return out;
}

/** What one case checked, summed per level so a run shows it checked something. */
interface CaseStats {
  /** The workload's own member writes reached cutAfter (otherwise the cut came after it settled). */
  cutByWorkload: boolean;
  /** Sectors compared across copies and against the oracle's acceptable values. */
  sectorsChecked: number;
  /** Of those, sectors a durable write pinned to one value (the zeroes are no longer acceptable). */
  durableSectors: number;
  /** Bitmap chunks marked on some member at the cut, and chunks the resync touched. */
  markedChunks: number;
  resyncedChunks: number;
}

async function runCase(c: Case): Promise<CaseStats> {
  const g = GEOMETRIES[c.geometry] as Geometry;
  const size = arraySize(g);
  const power = new PowerDomain({ seed: c.seed, mode: c.mode });
  const inner = Array.from({ length: g.members }, () => new MemoryDevice(DATA_OFFSET + MEMBER_DATA));
  const faulty = inner.map((d, i) => new FaultDevice(d, power, `m${i}`));
  const array: MdArray = await createArray({
    name: 'prop', level: g.level, members: faulty.map((device, i) => ({ name: `m${i}`, device })),
    ...(g.level === 10 ? { chunkSize: g.chunk, nearCopies: 2 } : {}),
    barrierIdle: 0, daemonSleep: 600,
  });
  assert.equal(array.size, size);
  assert.equal(array.bitmap.chunkSize, BITMAP_CHUNK);
  const chunks = Math.ceil(size / BITMAP_CHUNK);

  let clock = 0;
  const writes: WriteRec[] = [];
  const discards: DiscardRec[] = [];
  const flushes: Timed[] = [];
  const pending: Promise<unknown>[] = [];
  const timed = <R extends Timed>(rec: R, op: () => Promise<void>): void => {
    pending.push(op().then(() => { rec.ack = ++clock; }, () => undefined));
  };
  power.cutAfterWrites(c.cutAfter);
  const daemon = array.bitmap as unknown as { runDaemon?: () => Promise<void> };
  const totalSectors = size / SECTOR;
  for (const op of c.ops) {
    if (power.isCut) break;
    if (op.t === 'write' || op.t === 'discard') {
      const sector = op.sector % totalSectors;
      const sectors = Math.min(op.sectors, totalSectors - sector);
      if (op.t === 'write') {
        const rec: WriteRec = { sector, sectors, fua: op.fua, data: writeData(writes.length, sector, sectors), issue: ++clock, ack: null };
        writes.push(rec);
        timed(rec, () => array.write(sector * SECTOR, rec.data, { fua: op.fua }));
      } else {
        const rec: DiscardRec = { sector, sectors, issue: ++clock, ack: null };
        discards.push(rec);
        timed(rec, () => array.discard(sector * SECTOR, sectors * SECTOR));
      }
    } else if (op.t === 'flush') {
      const rec: Timed = { issue: ++clock, ack: null };
      flushes.push(rec);
      timed(rec, () => array.flush());
    } else if (op.t === 'daemon') {
      pending.push(daemon.runDaemon?.().catch(() => undefined) ?? Promise.resolve());
    } else {
      await Promise.allSettled(pending.splice(0));
    }
  }
  await Promise.allSettled(pending.splice(0));
  const cutByWorkload = power.isCut;
  // Always await: cut() is idempotent, and a cut the workload triggered may still be rewriting members.
  await power.cut();
  await array.abandon().catch(() => undefined);

  // What the members hold for the bitmap at the cut, before anything reads or repairs it.
  const stateBytes = await Promise.all(inner.map((d) => d.read(BITMAP_STATES, chunks)));
  const needsSync = (b: number) => b === DIRTY || b === NEED_SYNC || b === SYNCING || b >= STATE_COUNT;
  const onSome = new Set<number>();
  const onAll = new Set<number>();
  for (let ch = 0; ch < chunks; ch++) {
    const marks = stateBytes.map((s) => needsSync(s[ch] as number));
    if (marks.some(Boolean)) onSome.add(ch);
    if (marks.every(Boolean)) onAll.add(ch);
  }

  const recorders = inner.map((d) => new RecordingDevice(d));
  const { array: b } = await assembleArray({ members: recorders.map((device, i) => ({ name: `m${i}`, device })) });
  try {
    const summary = await b.waitSync();
    if (onAll.size > 0) assert.ok(summary?.complete, `resync did not complete: ${JSON.stringify(summary)}`);
    for (const r of recorders) r.recording = false;

    // (c) the resync's member data I/O, mapped back to bitmap chunks
    const touched = new Set<number>();
    recorders.forEach((r, m) => {
      for (const t of r.touched) {
        const end = t.offset + t.length;
        if (end <= DATA_OFFSET) continue;
        for (let off = Math.max(t.offset, DATA_OFFSET); off < end; off += SECTOR) {
          touched.add(Math.floor(arrayOffsetOf(g, m, off - DATA_OFFSET) / BITMAP_CHUNK));
        }
      }
    });
    const bridged = bridgedGaps(onSome, chunks);
    for (const ch of touched) {
      assert.ok(onSome.has(ch) || bridged.has(ch), `resync touched chunk ${ch}, which no member marked at the cut, nor lies in a short gap between two that were`);
    }
    for (const ch of onAll) assert.ok(touched.has(ch), `chunk ${ch} was marked on every member at the cut but not resynced`);

    // (a) and (b) over every sector any operation or the resync could have changed
    const sectors = new Set<number>();
    for (const r of [...writes, ...discards]) for (let s = r.sector; s < r.sector + r.sectors; s++) sectors.add(s);
    for (const ch of onSome) {
      for (let s = (ch * BITMAP_CHUNK) / SECTOR; s < Math.min(totalSectors, ((ch + 1) * BITMAP_CHUNK) / SECTOR); s++) sectors.add(s);
    }
    const oracle = new Oracle(writes, discards, flushes);
    let sectorsChecked = 0;
    let durableSectors = 0;
    for (const [first, end] of runsOf([...sectors].sort((x, y) => x - y), g)) {
      const length = (end - first) * SECTOR;
      const copies = await Promise.all(copiesOf(g, first * SECTOR).map((p) => inner[p.member]!.read(DATA_OFFSET + p.offset, length)));
      const seen = copies[0] as Buffer;
      for (let s = first; s < end; s++) {
        const at = (s - first) * SECTOR;
        const ok = oracle.acceptable(s);
        if (ok === undefined) continue;
        sectorsChecked++;
        if (!ok.includes(ZERO_SECTOR)) durableSectors++;
        const value = seen.subarray(at, at + SECTOR);
        for (const [i, copy] of copies.entries()) {
          assert.ok(copy.subarray(at, at + SECTOR).equals(value), `(a) sector ${s}: copy ${i} differs from copy 0 after resync`);
        }
        assert.ok(ok.some((v) => v.equals(value)),
          `(b) sector ${s}: holds write ${value.readUInt32LE(0) - 1} sector ${value.readUInt32LE(4)}, not one of ${ok.length} acceptable values`);
      }
    }
    const through = await b.read(0, Math.min(size, 4 * MIB));
    assert.equal(through.length, Math.min(size, 4 * MIB));
    return { cutByWorkload, sectorsChecked, durableSectors, markedChunks: onSome.size, resyncedChunks: touched.size };
  } finally {
    await b.stop();
  }
}

const sectorsArb = fc.oneof(
  { weight: 3, arbitrary: fc.integer({ min: 1, max: 16 }) },
  { weight: 2, arbitrary: fc.integer({ min: 17, max: 128 }) },
  { weight: 1, arbitrary: fc.integer({ min: 129, max: 512 }) },
);
/** Offsets cluster near a few chunks so writes overlap, plus some anywhere in the array. */
const sectorArb = fc.oneof(
  { weight: 3, arbitrary: fc.integer({ min: 0, max: 1024 }) },
  { weight: 2, arbitrary: fc.integer({ min: 0, max: 8191 }).map((s) => s * 128) },
  { weight: 1, arbitrary: fc.nat() },
);
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 8, arbitrary: fc.record({ t: fc.constant('write' as const), sector: sectorArb, sectors: sectorsArb, fua: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('discard' as const), sector: sectorArb, sectors: fc.integer({ min: 1, max: 512 }) }) },
  { weight: 2, arbitrary: fc.constant({ t: 'flush' as const }) },
  { weight: 1, arbitrary: fc.constant({ t: 'daemon' as const }) },
  { weight: 3, arbitrary: fc.constant({ t: 'wait' as const }) },
);
/** Cases on the geometries of one level. */
function caseArb(level: 1 | 10): fc.Arbitrary<Case> {
  const geometries = GEOMETRIES.flatMap((g, i) => (g.level === level ? [i] : []));
  return fc.record({
    geometry: fc.constantFrom(...geometries),
    ops: fc.array(opArb, { minLength: 1, maxLength: 40 }),
    cutAfter: fc.nat(160),
    mode: fc.constantFrom<CutMode>('drop', 'keep', 'random'),
    seed: fc.nat(),
  });
}

/** Cases this property once failed on, run every time. */
const REGRESSIONS: Case[] = [
  // A cut the workload triggered was still rewriting the members when reassembly began.
  { geometry: 3, ops: [{ t: 'write', sector: 117440384, sectors: 129, fua: false }], cutAfter: 3, mode: 'random', seed: 960017694 },
  // The daemon's Clean reached disk before the completed (but volatile) data write it vouched for.
  {
    geometry: 0,
    ops: [{ t: 'write', sector: 0, sectors: 129, fua: false }, { t: 'wait' }, { t: 'write', sector: 0, sectors: 17, fua: false }, { t: 'daemon' }, { t: 'wait' }],
    cutAfter: 4, mode: 'random', seed: 2094514067,
  },
];

const FILE = 'test/md/power-cut-property.test.ts';
const RUNS_PER_LEVEL = scaled(30, 2_500, 'LLRAID_PROPERTY_RUNS');
const SEED = propertySeed(FILE);

for (const level of [1, 10] as const) {
  const name = `raid${level}: after a power cut at any moment, the bitmap-guided resync leaves identical copies holding every durable write and touches only marked chunks`;
  test(name, async () => {
    const perGeometry = new Map(GEOMETRIES.flatMap((g, i) => (g.level === level ? [[i, 0] as [number, number]] : [])));
    const total = { cutByWorkload: 0, sectorsChecked: 0, durableSectors: 0, markedChunks: 0, resyncedChunks: 0 };
    const ran = await runProperty({
      name: `raid${level}: after a power cut`,
      file: FILE,
      seed: SEED,
      stream: level,
      numRuns: RUNS_PER_LEVEL,
      property: fc.asyncProperty(caseArb(level), async (c) => {
        const stats = await runCase(c);
        perGeometry.set(c.geometry, (perGeometry.get(c.geometry) ?? 0) + 1);
        total.cutByWorkload += stats.cutByWorkload ? 1 : 0;
        total.sectorsChecked += stats.sectorsChecked;
        total.durableSectors += stats.durableSectors;
        total.markedChunks += stats.markedChunks;
        total.resyncedChunks += stats.resyncedChunks;
      }),
      examples: REGRESSIONS.filter((c) => GEOMETRIES[c.geometry]!.level === level).map((c): [Case] => [c]),
    });
    console.log(
      `power cut raid${level}: ${ran} cases ran, seed ${SEED} ` +
        `(${[...perGeometry].map(([i, n]) => `${GEOMETRIES[i]!.label}: ${n}`).join(', ')}); ` +
        `${total.cutByWorkload} cut by the workload's writes, the rest after it; ${total.sectorsChecked} sectors checked, ${total.durableSectors} pinned by a durable write; ` +
        `${total.resyncedChunks} chunks resynced of ${total.markedChunks} marked at the cut`,
    );
    // A run (not the replay of one case) that never cut in the middle of writes, never had a
    // durable write to check or never resynced a chunk exercised none of what the property is about.
    if (process.env[PATH_ENV] === undefined) {
      assert.ok(total.cutByWorkload > 0, `raid${level}: no case of ${ran} cut the power in the middle of its writes`);
      assert.ok(total.durableSectors > 0, `raid${level}: no case of ${ran} had a durable write to check`);
      assert.ok(total.resyncedChunks > 0, `raid${level}: no case of ${ran} left a chunk for the resync`);
    }
  });
}
