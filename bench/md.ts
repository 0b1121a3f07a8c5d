// Benchmark of the md engine (issue 2), `npm run bench`: all on the same member files in /dev/shm.
//   1. raid1 (2 members) and raid10 near=2 (4 members): 4 KiB random writes (32 in flight) and
//      1 MiB sequential writes, llbitmap against `bitmap: none` (target: llbitmap >= 0.95x). The
//      arrays run side by side in interleaved slices, and the CPU time per write is shown too.
//   2. Resync after a power cut on a 4 GiB raid1: (i) the last writes covered one contiguous 1%;
//      (ii) 4 KiB random writes over the whole array, with other bitmap chunk and block sizes.
//      Chunks marked at the cut, bytes resynced, time against a full resync of the same array
//      (target for (i): <= 0.05x, judged on the array with every byte written), and what infect cost.
//   3. Resync throughput against a plain sequential copy between the same files (target >= 0.8x).
// Environment: LLRAID_BENCH_DIR (default /dev/shm/llraid-bench-md), BENCH_MD_GIB (array size, 4),
// BENCH_MD_RANDOM_OPS (4 KiB writes before the cut in 2, 20000), BENCH_MD_THROUGHPUT_OPS (4 KiB
// writes per array in 1, 200000), BENCH_MD_REPEATS (interleaved runs per row in 1, median taken, 3),
// BENCH_MD_ONLY (sections, e.g. 1 or 2,3).

import { mkdirSync, openSync, readSync, closeSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { assembleArray, createArray, type MdArray, type MemberSpec, type SyncSummary } from '../src/md/index.js';
import type { BlockDevice } from '../src/block/block-device.js';
import { FileDevice } from '../src/block/file-device.js';
import { FaultDevice, PowerDomain } from '../src/block/fault-device.js';
import { LlBitmap } from '../src/md/llbitmap/index.js';
import { copyRange, freshFile, medianOfInterleaved, mibPerSecond, overheadCells, randomOffsets, randomWrites, sequentialWrites, type RunResult } from './md-workloads.js';
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

/** none; llbitmap as it runs (Linux's infect rule on raid1/10); llbitmap with infectUnwritten off. */
type Kind = 'none' | 'llbitmap' | 'lazyInfect';
const KINDS: Kind[] = ['none', 'llbitmap', 'lazyInfect'];
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
    if (kind === 'lazyInfect' && a.bitmap instanceof LlBitmap) a.bitmap.infectUnwritten = false;
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
      rows.push([lv.label, w.label, ...overheadCells(m, 'llbitmap', 'none', 'lazyInfect', 0.95)]);
    }
  }
  printTable(`1. write throughput, MiB/s (fresh arrays, each run cut into ${SLICES} slices interleaved with the other kinds'; ${THROUGHPUT_OPS} random 4 KiB writes, 512 MiB sequential; the median of ${REPEATS} runs)`,
    ['array', 'workload', 'none', 'llbitmap', 'llbitmap/none', 'target', 'each run', 'none CPU us/op', 'llbitmap CPU us/op', 'CPU none/llbitmap',
      'llbitmap, Unwritten not infected', 'that/none'], rows);
}

// ------------------------------------------------------------------ 2. resync after a power cut

interface Variant {
  label: string;
  bitmapChunkSize?: number;
  blockSize?: number;
  /** LlBitmap.infectUnwritten for the measured writes (default: the kernel's rule on raid1). */
  infectUnwritten?: boolean;
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
async function cutAndResyncOnce(v: Variant, last: LastWrites): Promise<CutResult> {
  const paths = PATHS.slice(0, 2);
  let devs = await openDevices(paths, v.blockSize);
  const power = new PowerDomain({ seed: 7, mode: 'random' });
  const faulty = devs.map((d, i) => new FaultDevice(d, power, `m${i}`));
  const { array: b } = await assembleArray({ members: specs(paths, faulty) });
  if (v.infectUnwritten !== undefined && b.bitmap instanceof LlBitmap) b.bitmap.infectUnwritten = v.infectUnwritten;
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

  devs = await openDevices(paths, v.blockSize);
  const { array: c } = await assembleArray({ members: specs(paths, devs), ...UNTHROTTLED });
  const summary = await c.waitSync();
  await c.stop();
  await Promise.all(devs.map((d) => d.close()));
  if (!summary?.complete) throw new Error(`bench: expected a complete resync, found ${JSON.stringify(summary)}`);
  return { chunkSize, chunks, written: w.chunksOf(chunkSize), marked, summary };
}

/** buildPrefilled, then `cuts` cut-and-resync cycles; the one with the median resync time. */
async function cutAndResync(v: Variant, last: LastWrites, cuts = 1): Promise<CutResult> {
  await buildPrefilled(v);
  const runs: CutResult[] = [];
  for (let i = 0; i < cuts; i++) runs.push(await cutAndResyncOnce(v, last));
  runs.sort((x, y) => x.summary.seconds - y.summary.seconds);
  return runs[Math.floor(runs.length / 2)]!;
}

/** A full resync of the same files: the same data as a `bitmap: none` array, crashed. */
async function fullResync(): Promise<SyncSummary> {
  const paths = PATHS.slice(0, 2);
  const a = await createArray({ name: 'bench-full', level: 1, members: paths, bitmap: 'none', assumeClean: true, force: true });
  await a.abandon();
  const { array: b } = await assembleArray({ members: paths, ...UNTHROTTLED });
  const s = await b.waitSync();
  await b.stop();
  if (!s?.complete || s.bytesSynced !== b.size) throw new Error(`bench: expected a full resync, found ${JSON.stringify(s)}`);
  return s;
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
  await cutAndResync({ label: 'warm-up' }, contiguousOnePercent);
  await fullResync();
  const contiguous = await cutAndResync({ label: 'default' }, contiguousOnePercent, 3);
  const fullI = await fullResync();
  const offsets = randomOffsets(RANDOM_OPS, 4 * KIB, ARRAY_BYTES, 99);
  const variants: Variant[] = [
    { label: 'chunk 64K, block 512 (default)' },
    { label: 'chunk 256K, block 512', bitmapChunkSize: 256 * KIB },
    { label: 'chunk 1M, block 512', bitmapChunkSize: MIB },
    { label: 'chunk 64K, block 4096', blockSize: 4096 },
    { label: 'chunk 64K, block 512, Unwritten not infected', infectUnwritten: false },
  ];
  const random: { v: Variant; r: CutResult }[] = [];
  for (const v of variants) random.push({ v, r: await cutAndResync(v, randomOverArray(offsets)) });
  const fullII = await fullResync();

  // (i) again on an array with every byte written, as any disk that has been in use: a full
  // resync of the sparse files above reads mostly holes, which tmpfs answers without touching
  // memory, and no real member does. Sections 3's passes run on these files too.
  const contiguousWritten = await cutAndResync({ label: 'all written', written: 'all' }, contiguousOnePercent, 3);

  // 3. resync throughput against a plain sequential copy of the same bytes between the same files
  // Both over the whole array, alternating, median of three: same bytes, same page-cache state.
  const copies: number[] = [];
  const fulls: SyncSummary[] = [];
  for (let round = 0; round < 3; round++) {
    copies.push(mibPerSecond(copyRange(PATHS[0] as string, PATHS[1] as string, DATA_OFFSET, ARRAY_BYTES)));
    fulls.push(await fullResync());
  }
  fulls.sort((x, y) => x.seconds - y.seconds);
  const fullWritten = fulls[1]!;

  const rowOf = (label: string, r: CutResult, full: SyncSummary, target: string) => [
    label, `${r.chunkSize / KIB}K`, r.chunks, r.written, r.marked, r.marked - r.written,
    (r.summary.bytesSynced / MIB).toFixed(1), r.summary.seconds, full.seconds, ratio(r.summary.seconds, full.seconds), target,
  ];
  printTable(`2. resync after a power cut, ${ARRAY_BYTES / GIB} GiB raid1 on sparse files (256 MiB written and cleanly stopped before, unless said; (i): median of 3 cuts)`,
    ['last writes', 'chunk', 'chunks', 'written', 'marked at cut', 'infected', 'MiB resynced', 'resync s', 'full resync s', 'vs full', 'target'],
    [
      rowOf('(i) contiguous 1%', contiguous, fullI, '-'),
      rowOf('(i) contiguous 1%, every byte of the array written before', contiguousWritten, fullWritten,
        verdict(contiguousWritten.summary.seconds / fullWritten.seconds, 0.05, 'most')),
      ...random.map(({ v, r }) => rowOf(`(ii) ${RANDOM_OPS} x 4K random, ${v.label}`, r, fullII, '-')),
    ]);
  printTable('2b. what infect cost in (ii): resync of only the written chunks, estimated at the rate the same resync ran',
    ['variant', 'marked/written', 'extra MiB resynced', 'resync s', 'without infect s (est.)', 'infect cost s'],
    random.map(({ v, r }) => {
      const without = (r.written * r.chunkSize) / (r.summary.bytesSynced / r.summary.seconds);
      return [v.label, ratio(r.marked, r.written), ((r.summary.bytesSynced - r.written * r.chunkSize) / MIB).toFixed(1), r.summary.seconds, without, r.summary.seconds - without];
    }));

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
