// Benchmark of the md engine (issue 2), `npm run bench`: all on the same member files in /dev/shm.
//   1. raid1 (2 members) and raid10 near=2 (4 members): 4 KiB random writes (32 in flight) and
//      1 MiB sequential writes, llbitmap against `bitmap: none` (target: llbitmap >= 0.95x). The
//      arrays run side by side in interleaved slices, and the CPU time per write is shown too.
//   2. Resync after a power cut on a 4 GiB raid1: (i) the last writes covered one contiguous 1%;
//      (ii) 4 KiB random writes over the whole array, with other bitmap chunk and block sizes and
//      with infect on. Chunks marked at the cut, bytes resynced, time against a full resync of the
//      same cut (the member files copied at the cut: the same differences to repair), what infect
//      cost and saved (2b), and issue 16 item 7's table (2c: guided resync never slower than full,
//      marked/written <= 1.5x, llbitmap/none write throughput >= 0.95x, each measured here).
//   3. Resync throughput against a plain sequential copy between the same files (target >= 0.8x).
// Environment: LLRAID_BENCH_DIR (default /dev/shm/llraid-bench-md), BENCH_MD_GIB (array size, 4),
// BENCH_MD_RANDOM_OPS (4 KiB writes before the cut in 2, 20000), BENCH_MD_THROUGHPUT_OPS (4 KiB
// writes per array in 1, 200000), BENCH_MD_REPEATS (interleaved runs per row in 1, median taken, 3),
// BENCH_MD_ONLY (sections, e.g. 1 or 2,3).

import { mkdirSync, openSync, readSync, closeSync, renameSync, rmSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { assembleArray, createArray, type MdArray, type MemberSpec, type SyncSummary } from '../src/md/index.js';
import type { BlockDevice } from '../src/block/block-device.js';
import { FileDevice } from '../src/block/file-device.js';
import { FaultDevice, PowerDomain } from '../src/block/fault-device.js';
import { LlBitmap } from '../src/md/llbitmap/index.js';
import { copyRange, freshFile, medianOfInterleaved, mibPerSecond, overheadCells, randomOffsets, randomWrites, randomWritesNow, sequentialWrites, totalsMiBs, type RunResult } from './md-workloads.js';
import { median, printTable, ratio, verdict } from './table.js';

const KIB = 1024;
const MIB = 1024 * KIB;
const GIB = 1024 * MIB;
/** createArray's layout: superblock at 4 KiB, bitmap 8 sectors on, data at 1 MiB. */
const DATA_OFFSET = MIB;
const BITMAP_STATES = 4096 + 8 * 512 + 1024;
const DIR = process.env.LLRAID_BENCH_DIR ?? '/dev/shm/llraid-bench-md';
const ARRAY_BYTES = Number(process.env.BENCH_MD_GIB ?? 4) * GIB;
const RANDOM_OPS = Number(process.env.BENCH_MD_RANDOM_OPS ?? 20000);
const THROUGHPUT_OPS = Number(process.env.BENCH_MD_THROUGHPUT_OPS ?? 200000);
/** Which sections to run, e.g. "1" or "2,3" (2 and 3 share their runs); default all. */
const ONLY = new Set((process.env.BENCH_MD_ONLY ?? '1,2,3').split(','));
const MEMBER_BYTES = DATA_OFFSET + ARRAY_BYTES;
/** The sync thread's default ceiling is 200 MB/s (md's); the benchmark measures the engine. */
const UNTHROTTLED = { syncSpeedMax: 100_000_000 };
const PATHS = [0, 1, 2, 3].map((i) => join(DIR, `m${i}.img`));

function fresh(paths: string[]): void {
  for (const p of paths) freshFile(p, MEMBER_BYTES);
}

// ------------------------------------------------------------------ 1. write throughput

interface Level {
  label: string;
  level: 1 | 10;
  members: number;
}

const LEVELS: Level[] = [
  { label: 'raid1 x2', level: 1, members: 2 },
  { label: 'raid10 n2 x4', level: 10, members: 4 },
];

/** none; llbitmap as it runs (no infect on raid1/10); llbitmap with Linux's infect rule. */
type Kind = 'none' | 'llbitmap' | 'infect';
const KINDS: Kind[] = ['none', 'llbitmap', 'infect'];
/** Each kind's run is cut into this many slices, run in turn with the other kinds' (interleave). */
const SLICES = 20;
/** Interleaved runs per row: one run still moves by ±5% on this machine. */
const REPEATS = Number(process.env.BENCH_MD_REPEATS ?? 3);

/** Member files of one kind's array: kinds never share files, so all three arrays live at once. */
function kindPaths(kind: Kind, members: number): string[] {
  const k = KINDS.indexOf(kind);
  return Array.from({ length: members }, (_, i) => join(DIR, `t${k}-${i}.img`));
}

function createFor(kind: Kind, lv: Level, paths: string[]): Promise<MdArray> {
  return createArray({
    name: 'bench', level: lv.level, members: paths, bitmap: kind === 'none' ? 'none' : 'llbitmap', force: true,
    // No initial resync competes with the workload: none is told the copies match; a new
    // llbitmap array needs no resync at all (every chunk starts Unwritten).
    ...(kind === 'none' ? { assumeClean: true } : {}),
  }).then((a) => {
    if (kind === 'infect' && a.bitmap instanceof LlBitmap) {
      a.bitmap.infect = true;
      a.bitmap.infectUnwritten = true;
    }
    return a;
  });
}

interface Workload {
  label: string;
  /** Slice `slice` of `slices` of the whole run. */
  run(a: MdArray, slice: number, slices: number): Promise<RunResult>;
}

function workloads(arraySize: number): Workload[] {
  const offsets = randomOffsets(THROUGHPUT_OPS, 4 * KIB, arraySize, 42);
  const seqBytes = Math.min(512 * MIB, arraySize);
  return [
    {
      label: '4k randwrite QD32',
      run: (a, i, n) => randomWrites(a, offsets.slice(Math.floor((offsets.length * i) / n), Math.floor((offsets.length * (i + 1)) / n)), 4 * KIB, 32),
    },
    {
      label: '1M seqwrite QD8',
      run: (a, i, n) => {
        const from = Math.floor((seqBytes / MIB) * i / n) * MIB;
        return sequentialWrites(a, from, Math.floor((seqBytes / MIB) * (i + 1) / n) * MIB - from, MIB, 8);
      },
    },
  ];
}

async function throughput(): Promise<void> {
  const rows: (string | number)[][] = [];
  for (const lv of LEVELS) {
    const probeSize = lv.level === 1 ? ARRAY_BYTES : (ARRAY_BYTES * lv.members) / 2;
    for (const w of workloads(probeSize)) {
      // Warm-up: every kind runs the first slices once, on arrays thrown away after.
      for (const kind of KINDS) {
        const paths = kindPaths(kind, lv.members);
        fresh(paths);
        const a = await createFor(kind, lv, paths);
        for (let i = 0; i < 2; i++) await w.run(a, i, SLICES);
        await a.stop();
      }
      const m = await medianOfInterleaved({
        kinds: KINDS, repeats: REPEATS, slices: SLICES, subject: 'llbitmap', baseline: 'none',
        open: (kind) => {
          const paths = kindPaths(kind, lv.members);
          fresh(paths);
          return createFor(kind, lv, paths);
        },
        run: (a, i) => w.run(a, i, SLICES),
        close: async (a, kind) => {
          await a.stop();
          fresh(kindPaths(kind, lv.members));
        },
      });
      rows.push([lv.label, w.label, ...overheadCells(m, 'llbitmap', 'none', 'infect', 0.95)]);
    }
  }
  printTable(`1. write throughput, MiB/s (fresh arrays, each run cut into ${SLICES} slices interleaved with the other kinds'; ${THROUGHPUT_OPS} random 4 KiB writes, 512 MiB sequential; the median of ${REPEATS} runs)`,
    ['array', 'workload', 'none', 'llbitmap', 'llbitmap/none', 'target', 'each run', 'none CPU us/op', 'llbitmap CPU us/op', 'CPU none/llbitmap',
      'llbitmap, infect on (kernel rule)', 'that/none'], rows);
}

// ------------------------------------------------------------------ 2. resync after a power cut

interface Variant {
  label: string;
  bitmapChunkSize?: number;
  blockSize?: number;
  /** Infect on (the kernel's rule, Unwritten neighbours included) for the measured writes. */
  infect?: boolean;
  /** Write the whole array before the cut, not just the 256 MiB prefill (see resyncAfterCut). */
  written?: 'prefill' | 'all';
}

interface CutResult {
  chunkSize: number;
  chunks: number;
  /** Distinct bitmap chunks the last writes touched. */
  written: number;
  /** Dirty, NeedSync or Syncing on the first member at the cut. */
  marked: number;
  summary: SyncSummary;
  /** CPU seconds of this process (every thread) during the resync: steadier than time on a busy machine. */
  cpu: number;
  /** A full resync of the same cut (the member files as they were at the cut), when measured. */
  full?: SyncSummary & { cpu: number };
}

/** A sync pass's summary with the CPU seconds this process spent while it ran. */
async function timedSync(a: MdArray): Promise<{ summary: SyncSummary | undefined; cpu: number }> {
  const before = process.cpuUsage();
  const summary = await a.waitSync();
  const used = process.cpuUsage(before);
  return { summary, cpu: (used.user + used.system) / 1e6 };
}

/** Opens members as FileDevices (optionally reporting a larger block size) the caller closes. */
async function openDevices(paths: string[], blockSize?: number): Promise<FileDevice[]> {
  return Promise.all(paths.map((p) => FileDevice.open(p, blockSize === undefined ? {} : { blockSize })));
}

function specs(paths: string[], devices: BlockDevice[]): MemberSpec[] {
  return devices.map((device, i) => ({ name: paths[i] as string, device }));
}

function markedChunks(path: string, chunks: number): number {
  const fd = openSync(path, 'r');
  try {
    const b = Buffer.alloc(chunks);
    readSync(fd, b, 0, chunks, BITMAP_STATES);
    let n = 0;
    for (const s of b) if (s === 2 || s === 3 || s === 4) n++;
    return n;
  } finally {
    closeSync(fd);
  }
}

/**
 * Data written and cleanly stopped before the measured window: eight 32 MiB extents spread out,
 * or every byte of the array.
 */
async function prefill(a: MdArray, written: 'prefill' | 'all'): Promise<void> {
  if (written === 'all') {
    await sequentialWrites(a, 0, a.size, MIB, 8);
    return;
  }
  for (let i = 0; i < 8; i++) await sequentialWrites(a, Math.floor((a.size / 8) * i / MIB) * MIB, 32 * MIB, MIB, 8);
}

type LastWrites = (a: MdArray) => { main: () => Promise<unknown>; tail: () => Promise<unknown>[]; chunksOf: (cs: number) => number };

/** Builds the 4 GiB raid1 on fresh files, writes the prefill and stops cleanly. */
async function buildPrefilled(v: Variant): Promise<void> {
  const paths = PATHS.slice(0, 2);
  fresh(paths);
  const devs = await openDevices(paths, v.blockSize);
  const a = await createArray({
    name: 'bench-cut', level: 1, members: specs(paths, devs), force: true,
    ...(v.bitmapChunkSize === undefined ? {} : { bitmapChunkSize: v.bitmapChunkSize }),
  });
  await prefill(a, v.written ?? 'prefill');
  await a.stop();
  await Promise.all(devs.map((d) => d.close()));
}

/**
 * Reassembles the cleanly stopped raid1 over FaultDevices, runs `last` with its final requests in
 * flight when the power goes, then reassembles and resyncs (which leaves it clean again).
 */
async function cutAndResyncOnce(v: Variant, last: LastWrites, fair: boolean): Promise<CutResult> {
  const paths = PATHS.slice(0, 2);
  let devs = await openDevices(paths, v.blockSize);
  const power = new PowerDomain({ seed: 7, mode: 'random' });
  const faulty = devs.map((d, i) => new FaultDevice(d, power, `m${i}`));
  const { array: b } = await assembleArray({ members: specs(paths, faulty) });
  if (v.infect && b.bitmap instanceof LlBitmap) {
    b.bitmap.infect = true;
    b.bitmap.infectUnwritten = true;
  }
  const chunkSize = b.bitmap.chunkSize;
  const chunks = Math.ceil(b.size / chunkSize);
  const w = last(b);
  await w.main();
  const tail = w.tail().map((p) => p.catch(() => undefined));
  await power.cut();
  await Promise.allSettled(tail);
  await b.abandon();
  await Promise.all(devs.map((d) => d.close()));
  const marked = markedChunks(paths[0] as string, chunks);
  // The files as the cut left them, for a full resync of the same differences afterwards (sparse
  // copies: only what was written takes room). The originals are rewritten as fresh copies too:
  // tmpfs lays a copied file out in order, and a file written at random reads slower, which would
  // favour the pass on the copy.
  if (fair) {
    for (const p of paths) {
      execFileSync('cp', ['--sparse=always', p, `${p}.cut`]);
      execFileSync('cp', ['--sparse=always', p, `${p}.new`]);
      renameSync(`${p}.new`, p);
    }
  }

  devs = await openDevices(paths, v.blockSize);
  const { array: c } = await assembleArray({ members: specs(paths, devs), ...UNTHROTTLED });
  const { summary, cpu } = await timedSync(c);
  await c.stop();
  await Promise.all(devs.map((d) => d.close()));
  if (!summary?.complete) throw new Error(`bench: expected a complete resync, found ${JSON.stringify(summary)}`);
  let full: (SyncSummary & { cpu: number }) | undefined;
  if (fair) {
    const copies = paths.map((p) => `${p}.cut`);
    full = await fullResync(v.blockSize, copies);
    for (const p of copies) rmSync(p, { force: true });
  }
  return { chunkSize, chunks, written: w.chunksOf(chunkSize), marked, summary, cpu, ...(full ? { full } : {}) };
}

/**
 * buildPrefilled, then `cuts` cut-and-resync cycles; the one with the median resync time (with
 * `fair`, the median guided/full ratio, each cut's full resync run on a copy of that cut).
 */
async function cutAndResync(v: Variant, last: LastWrites, cuts = 1, fair = false): Promise<CutResult> {
  await buildPrefilled(v);
  const runs: CutResult[] = [];
  for (let i = 0; i < cuts; i++) runs.push(await cutAndResyncOnce(v, last, fair));
  const key = (r: CutResult): number => r.summary.seconds / (r.full?.seconds ?? 1);
  runs.sort((x, y) => key(x) - key(y));
  return runs[Math.floor(runs.length / 2)]!;
}

/**
 * A full resync of the same files: the same data as a `bitmap: none` array, crashed. New
 * superblocks, the data as it is: differences between the copies are repaired like any.
 */
async function fullResync(blockSize?: number, paths = PATHS.slice(0, 2)): Promise<SyncSummary & { cpu: number }> {
  let devs = await openDevices(paths, blockSize);
  const a = await createArray({ name: 'bench-full', level: 1, members: specs(paths, devs), bitmap: 'none', assumeClean: true, force: true });
  await a.abandon();
  await Promise.all(devs.map((d) => d.close()));
  devs = await openDevices(paths, blockSize);
  const { array: b } = await assembleArray({ members: specs(paths, devs), ...UNTHROTTLED });
  const { summary: s, cpu } = await timedSync(b);
  await b.stop();
  await Promise.all(devs.map((d) => d.close()));
  if (!s?.complete || s.bytesSynced !== b.size) throw new Error(`bench: expected a full resync, found ${JSON.stringify(s)}`);
  return { ...s, cpu };
}

const TAIL = 64;

function contiguousOnePercent(a: MdArray) {
  const length = Math.floor((a.size * 0.01) / MIB) * MIB;
  const from = Math.floor((a.size * 0.37) / MIB) * MIB;
  const ops = length / MIB;
  const data = Buffer.alloc(MIB, 0x3c);
  return {
    main: () => sequentialWrites(a, from, (ops - 8) * MIB, MIB, 8),
    tail: () => Array.from({ length: 8 }, (_, i) => a.write(from + (ops - 8 + i) * MIB, data)),
    chunksOf: (cs: number) => Math.floor((from + length - 1) / cs) - Math.floor(from / cs) + 1,
  };
}

function randomOverArray(offsets: number[]) {
  return (a: MdArray) => {
    const data = Buffer.alloc(4 * KIB, 0xc3);
    return {
      main: () => randomWrites(a, offsets.slice(0, -TAIL), 4 * KIB, 32),
      tail: () => offsets.slice(-TAIL).map((o) => a.write(o, data)),
      chunksOf: (cs: number) => new Set(offsets.map((o) => Math.floor(o / cs))).size,
    };
  };
}

async function resyncAfterCut(): Promise<void> {
  // A first cut and resync warms the JIT for both passes; it is not measured.
  await cutAndResync({ label: 'warm-up' }, contiguousOnePercent, 1, true);
  const contiguous = await cutAndResync({ label: 'default' }, contiguousOnePercent, 3, true);
  const offsets = randomOffsets(RANDOM_OPS, 4 * KIB, ARRAY_BYTES, 99);
  const variants: Variant[] = [
    { label: 'chunk 64K, block 512 (default: no infect on raid1)' },
    { label: 'chunk 64K, block 512, infect on (the kernel rule)', infect: true },
    { label: 'chunk 16K, block 512', bitmapChunkSize: 16 * KIB },
    { label: 'chunk 256K, block 512', bitmapChunkSize: 256 * KIB },
    { label: 'chunk 1M, block 512', bitmapChunkSize: MIB },
    { label: 'chunk 64K, block 4096', blockSize: 4096 },
  ];
  const random: { v: Variant; r: CutResult }[] = [];
  // Every variant the median of 3 cuts, as the default: one cut's guided/full ratio moves by a
  // third from run to run here, and the slowest of six single cuts was as often noise as a variant
  // (infect on, which marks every chunk, so that its pass syncs what a full one does: 1.09-1.11x
  // in single cuts; by hand, in one process, three guided passes of one such cut took 0.39-0.44 s
  // and three full ones of it 0.37-0.52 s).
  for (const v of variants) random.push({ v, r: await cutAndResync(v, randomOverArray(offsets), 3, true) });

  // (i) again on an array with every byte written, as any disk that has been in use: a full
  // resync of the sparse files above reads mostly holes, which tmpfs answers without touching
  // memory, and no real member does. Sections 3's passes run on these files too.
  const contiguousWritten = await cutAndResync({ label: 'all written', written: 'all' }, contiguousOnePercent, 3);
  // (ii) on it too: there every byte a pass reads is data, as on any disk in use.
  const randomWritten = await cutAndResync({ label: 'every byte written', written: 'all' }, randomOverArray(offsets), 3);

  // 3. resync throughput against a plain sequential copy of the same bytes between the same files
  // Both over the whole array, alternating, median of three: same bytes, same page-cache state.
  const copies: number[] = [];
  const fulls: (SyncSummary & { cpu: number })[] = [];
  for (let round = 0; round < 3; round++) {
    copies.push(mibPerSecond(copyRange(PATHS[0] as string, PATHS[1] as string, DATA_OFFSET, ARRAY_BYTES)));
    fulls.push(await fullResync());
  }
  fulls.sort((x, y) => x.seconds - y.seconds);
  const fullWritten = fulls[1]!;

  const rowOf = (label: string, r: CutResult, full: SyncSummary & { cpu: number }, target: string) => [
    label, `${r.chunkSize / KIB}K`, r.chunks, r.written, r.marked, ratio(r.marked, r.written),
    (r.summary.bytesSynced / MIB).toFixed(1), (r.summary.bytesBridged / MIB).toFixed(1), r.summary.seconds, full.seconds, ratio(r.summary.seconds, full.seconds), target,
    r.cpu, full.cpu, ratio(r.cpu, full.cpu),
  ];
  printTable(`2. resync after a power cut, ${ARRAY_BYTES / GIB} GiB raid1 on sparse files (256 MiB written and cleanly stopped before, unless said); ` +
    'full resync: of the same cut (its member files copied at the cut), except where every byte was written (the same files, no cut); median of 3 cuts where said',
    ['last writes', 'chunk', 'chunks', 'written', 'marked at cut', 'marked/written', 'MiB resynced', 'MiB bridged', 'resync s', 'full resync s', 'vs full', 'target',
      'resync CPU s', 'full CPU s', 'CPU vs full'],
    [
      rowOf('(i) contiguous 1% (median of 3)', contiguous, contiguous.full!, verdict(contiguous.summary.seconds / contiguous.full!.seconds, 1, 'most')),
      rowOf('(i) contiguous 1%, every byte of the array written before (median of 3)', contiguousWritten, fullWritten,
        verdict(contiguousWritten.summary.seconds / fullWritten.seconds, 0.05, 'most')),
      ...random.map(({ v, r }) => rowOf(`(ii) ${RANDOM_OPS} x 4K random, ${v.label} (median of 3)`, r, r.full!,
        verdict(r.summary.seconds / r.full!.seconds, 1, 'most'))),
      rowOf(`(ii) ${RANDOM_OPS} x 4K random, default, every byte of the array written before (median of 3)`, randomWritten, fullWritten,
        verdict(randomWritten.summary.seconds / fullWritten.seconds, 1, 'most')),
    ]);

  // Both sides of infect on the same bench: what it costs after a crash (2 above) and what it saves
  // in bitmap writes and write throughput (fresh raid1, random 4 KiB writes, interleaved runs).
  const saved = await infectSaves();
  const def = random[0]!.r;
  const inf = random[1]!.r;
  printTable('2b. infect on raid1, both sides: bitmap write-outs and write throughput (fresh 4 GiB raid1, 4 KiB random writes QD32, ' +
    `${TRADE_OPS} per run, ${SLICES} interleaved slices, median of ${REPEATS}); marked chunks and resync after the cut of 2 (ii)`,
    ['raid1 llbitmap', 'bitmap write-outs per 1000 writes', 'MiB/s', 'vs none', 'marked/written at cut', 'MiB resynced', 'resync s', 'vs full resync of the same cut'],
    [
      ['no infect (default)', saved.writeOuts.llbitmap, saved.mibs.llbitmap, ratio(saved.mibs.llbitmap, saved.mibs.none), ratio(def.marked, def.written),
        (def.summary.bytesSynced / MIB).toFixed(1), def.summary.seconds, ratio(def.summary.seconds, def.full!.seconds)],
      ['infect on (kernel rule)', saved.writeOuts.infect, saved.mibs.infect, ratio(saved.mibs.infect, saved.mibs.none), ratio(inf.marked, inf.written),
        (inf.summary.bytesSynced / MIB).toFixed(1), inf.summary.seconds, ratio(inf.summary.seconds, inf.full!.seconds)],
    ]);

  const worst = random.reduce((w, x) => (x.r.summary.seconds / x.r.full!.seconds > w.r.summary.seconds / w.r.full!.seconds ? x : w));
  const tput = saved.mibs.llbitmap / saved.mibs.none;
  printTable('2c. issue 16 item 7, this run (defaults: no infect on raid1, 64 KiB chunks, 512-byte bitmap blocks)',
    ['row', 'value', 'ratio', 'target'],
    [
      [`bitmap-guided resync vs full resync of the same cut, ${RANDOM_OPS} x 4K random (default, median of 3)`,
        `${def.summary.seconds.toFixed(2)} s / ${def.full!.seconds.toFixed(2)} s`, ratio(def.summary.seconds, def.full!.seconds), verdict(def.summary.seconds / def.full!.seconds, 1, 'most')],
      [`the same, slowest of the ${variants.length} variants (${worst.v.label}; each the median of 3)`,
        `${worst.r.summary.seconds.toFixed(2)} s / ${worst.r.full!.seconds.toFixed(2)} s`, ratio(worst.r.summary.seconds, worst.r.full!.seconds),
        verdict(worst.r.summary.seconds / worst.r.full!.seconds, 1, 'most')],
      [`bitmap-guided resync vs full resync, ${RANDOM_OPS} x 4K random, every byte of the array written (default, median of 3)`,
        `${randomWritten.summary.seconds.toFixed(2)} s / ${fullWritten.seconds.toFixed(2)} s`, ratio(randomWritten.summary.seconds, fullWritten.seconds),
        verdict(randomWritten.summary.seconds / fullWritten.seconds, 1, 'most')],
      [`CPU of the guided resync vs the full one of the same cut, ${RANDOM_OPS} x 4K random (default, median of 3)`,
        `${def.cpu.toFixed(2)} s / ${def.full!.cpu.toFixed(2)} s`, ratio(def.cpu, def.full!.cpu), '-'],
      [`per byte read: guided MiB/s (synced + bridged) vs full MiB/s, ${RANDOM_OPS} x 4K random, sparse (default, median of 3)`,
        `${(readBytes(def.summary) / MIB / def.summary.seconds).toFixed(0)} / ${(def.full!.bytesSynced / MIB / def.full!.seconds).toFixed(0)} MiB/s`,
        ratio(readBytes(def.summary) / def.summary.seconds, def.full!.bytesSynced / def.full!.seconds), '-'],
      ['bitmap-guided resync vs full resync of the same cut, contiguous 1% (median of 3)',
        `${contiguous.summary.seconds.toFixed(2)} s / ${contiguous.full!.seconds.toFixed(2)} s`, ratio(contiguous.summary.seconds, contiguous.full!.seconds),
        verdict(contiguous.summary.seconds / contiguous.full!.seconds, 1, 'most')],
      [`chunks marked / written, ${RANDOM_OPS} x 4K random (default)`, `${def.marked} / ${def.written}`, ratio(def.marked, def.written), verdict(def.marked / def.written, 1.5, 'most')],
      ['write throughput llbitmap / none, raid1 4K random QD32 (2b), write()', `${saved.mibs.llbitmap.toFixed(1)} / ${saved.mibs.none.toFixed(1)} MiB/s`, ratio(saved.mibs.llbitmap, saved.mibs.none), verdict(tput, 0.95, 'least')],
      ['the same as the NBD server writes (writeNow, else write())', `${saved.now.llbitmap.toFixed(1)} / ${saved.now.none.toFixed(1)} MiB/s`, ratio(saved.now.llbitmap, saved.now.none),
        verdict(saved.now.llbitmap / saved.now.none, 0.95, 'least')],
      ['the same at depth 1 (QD1: one write at a time)', `${saved.nowQd1.llbitmap.toFixed(1)} / ${saved.nowQd1.none.toFixed(1)} MiB/s`, ratio(saved.nowQd1.llbitmap, saved.nowQd1.none),
        verdict(saved.nowQd1.llbitmap / saved.nowQd1.none, 0.95, 'least')],
    ]);

  const copyRate = median(copies);
  const fullRate = fullWritten.bytesSynced / MIB / fullWritten.seconds;
  const guidedMiBs = contiguousWritten.summary.bytesSynced / MIB / contiguousWritten.summary.seconds;
  printTable('3. resync throughput against a plain sequential copy of the whole array, every byte written (1 MiB read + write, one stream, same files; median of 3)',
    ['pass', 'MiB/s', 'copy MiB/s', 'ratio', 'target'],
    [
      ['full resync (read both copies, compare, rewrite differences)', fullRate, copyRate, ratio(fullRate, copyRate), verdict(fullRate / copyRate, 0.8, 'least')],
      ['bitmap-guided resync (i), every byte written', guidedMiBs, copyRate, ratio(guidedMiBs, copyRate), '-'],
    ]);
}

/** Bytes a sync pass read: what it synced and the gaps it bridged. */
function readBytes(s: SyncSummary): number {
  return s.bytesSynced + s.bytesBridged;
}

/** Random 4 KiB writes per array and run in 2b. */
const TRADE_OPS = Number(process.env.BENCH_MD_TRADE_OPS ?? 60000);

/** 2b: raid1 none / llbitmap / infect on, interleaved: MiB/s and bitmap write-outs per 1000 writes. */
async function infectSaves(): Promise<{ mibs: Record<Kind, number>; writeOuts: Record<Kind, number>; now: Served; nowQd1: Served }> {
  const lv = LEVELS[0]!;
  const offsets = randomOffsets(TRADE_OPS, 4 * KIB, ARRAY_BYTES, 42);
  const slice = (i: number) => offsets.slice(Math.floor((offsets.length * i) / SLICES), Math.floor((offsets.length * (i + 1)) / SLICES));
  const outs: Record<Kind, number[]> = { none: [], llbitmap: [], infect: [] };
  const open = (kind: Kind) => {
    const paths = kindPaths(kind, lv.members);
    fresh(paths);
    return createFor(kind, lv, paths);
  };
  const close = async (a: MdArray, kind: Kind) => {
    await a.stop();
    fresh(kindPaths(kind, lv.members));
  };
  // Warm-up, as in 1.
  for (const kind of KINDS) {
    const a = await open(kind);
    for (let i = 0; i < 2; i++) await randomWrites(a, slice(i), 4 * KIB, 32);
    await a.stop();
  }
  const m = await medianOfInterleaved({
    kinds: KINDS, repeats: REPEATS, slices: SLICES, subject: 'llbitmap', baseline: 'none',
    open: async (kind) => {
      const a = await open(kind);
      return { a, before: a.bitmap instanceof LlBitmap ? a.bitmap.writeOuts : 0 };
    },
    run: ({ a }, i) => randomWrites(a, slice(i), 4 * KIB, 32),
    close: async ({ a, before }, kind) => {
      outs[kind].push(a.bitmap instanceof LlBitmap ? ((a.bitmap.writeOuts - before) * 1000) / TRADE_OPS : 0);
      await close(a, kind);
    },
  });
  const mibs = Object.fromEntries(KINDS.map((k) => [k, totalsMiBs(m.run[k])])) as Record<Kind, number>;
  const writeOuts = Object.fromEntries(KINDS.map((k) => [k, median(outs[k])])) as Record<Kind, number>;
  // The same writes as the NBD server makes them (writeNow, else write()): what a volume sees,
  // at depth 32 and one at a time (a database's commits), where no other writer shares a
  // chunk's bitmap write-out.
  const served = async (depth: number): Promise<Served> => {
    const n = await medianOfInterleaved({
      kinds: ['none', 'llbitmap'], repeats: REPEATS, slices: SLICES, subject: 'llbitmap', baseline: 'none',
      open,
      run: (a, i) => randomWritesNow(a, slice(i), 4 * KIB, depth),
      close,
    });
    return { none: totalsMiBs(n.run.none), llbitmap: totalsMiBs(n.run.llbitmap) };
  };
  return { mibs, writeOuts, now: await served(32), nowQd1: await served(1) };
}

/** MiB/s of 2b's writes made as the NBD server makes them, without a bitmap and with one. */
interface Served {
  none: number;
  llbitmap: number;
}

async function main(): Promise<void> {
  mkdirSync(DIR, { recursive: true });
  const started = performance.now();
  try {
    if (ONLY.has('1')) await throughput();
    if (ONLY.has('2') || ONLY.has('3')) await resyncAfterCut();
  } finally {
    rmSync(DIR, { recursive: true, force: true });
  }
  console.log(`\nbench: ${((performance.now() - started) / 1000).toFixed(0)} s, member files in ${DIR}, array ${ARRAY_BYTES / GIB} GiB`);
}

await main();
