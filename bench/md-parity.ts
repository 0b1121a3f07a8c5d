// Benchmark of the raid5/raid6 personalities (issue 3), `npm run bench:parity`, members on tmpfs:
//   1. raid5 (4 members) and raid6 (5 members): 4 KiB random writes (32 in flight) and 1 MiB
//      sequential writes, llbitmap (lazy parity) against `bitmap: none` (target >= 0.9x). The
//      arrays run side by side in interleaved slices, and the CPU time per write is shown too.
//   2. Create → fully redundant while holding 1% written data: llbitmap's lazy parity (only the
//      written chunks get parity) against a full initial parity build (target <= 0.05x for a
//      contiguous 1%; spread evenly, infect marks far more and the row only reports it).
//   3. Full-stripe sequential writes against raid0 over the same data members (target >= 0.7x);
//      again with every member limited to MEMBER_MIBS as a disk of its own would be, since files
//      on one tmpfs share one memory bus and a parity member's writes slow the data members'.
// Environment: LLRAID_BENCH_DIR (default /dev/shm/llraid-bench-parity), BENCH_PARITY_MIB (member
// data size, 1024), BENCH_PARITY_ROUNDS (median of, 3), BENCH_PARITY_RANDOM_OPS (4 KiB writes per array in 1, 100000),
// BENCH_PARITY_MEMBER_MIBS (per-member bandwidth in table 3b, 256).

import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { createArray, type MdArray, type MemberSpec } from '../src/md/index.js';
import { FileDevice } from '../src/block/file-device.js';
import { RateLimitedDevice } from './rate-limited-device.js';
import { LlBitmap } from '../src/md/llbitmap/index.js';
import { freshFile, medianOfInterleaved, mibPerSecond, overheadCells, randomOffsets, randomWrites, runQueue, sequentialWrites, type RunResult } from './md-workloads.js';
import { median, printTable, ratio, verdict } from './table.js';

const KIB = 1024;
const MIB = 1024 * KIB;
const DATA_OFFSET = MIB;
const DIR = process.env.LLRAID_BENCH_DIR ?? '/dev/shm/llraid-bench-parity';
const MEMBER_DATA = Number(process.env.BENCH_PARITY_MIB ?? 1024) * MIB;
const ROUNDS = Number(process.env.BENCH_PARITY_ROUNDS ?? 3);
const RANDOM_OPS = Number(process.env.BENCH_PARITY_RANDOM_OPS ?? 100000);
const CHUNK = 512 * KIB;
const MEMBER_MIBS = Number(process.env.BENCH_PARITY_MEMBER_MIBS ?? 256);
/** The sync thread's default ceiling is md's 200 MB/s; the benchmark measures the engine. */
const UNTHROTTLED = { syncSpeedMax: 100_000_000, syncSpeedMin: 100_000_000 };
const PATHS = Array.from({ length: 5 }, (_, i) => join(DIR, `m${i}.img`));

function fresh(n: number): string[] {
  const paths = PATHS.slice(0, n);
  for (const p of paths) freshFile(p, DATA_OFFSET + MEMBER_DATA);
  return paths;
}

interface Geometry {
  label: string;
  level: 5 | 6;
  members: number;
}

const GEOMETRIES: Geometry[] = [
  { label: 'raid5 x4', level: 5, members: 4 },
  { label: 'raid6 x5', level: 6, members: 5 },
];

const dataMembers = (g: Geometry): number => g.members - (g.level === 5 ? 1 : 2);

// ------------------------------------------------------------------ 1. llbitmap against none

/** none (assume-clean); llbitmap on a new array (lazy parity); llbitmap on an assume-clean array. */
type OverheadKind = 'none' | 'llbitmap' | 'clean';
const OVERHEAD_KINDS: OverheadKind[] = ['none', 'llbitmap', 'clean'];

/** md's default sync_speed_min, KiB/s. */
const LAZY_KIBS = 1000;
/** Each kind's run is cut into this many slices, run in turn with the other kinds' (interleave). */
const SLICES = 20;

/** Member files of one kind's array: kinds never share files, so all three arrays live at once. */
function kindPaths(kind: OverheadKind, members: number): string[] {
  const k = OVERHEAD_KINDS.indexOf(kind);
  const paths = Array.from({ length: members }, (_, i) => join(DIR, `t${k}-${i}.img`));
  for (const p of paths) freshFile(p, DATA_OFFSET + MEMBER_DATA);
  return paths;
}

/**
 * none is told the members already agree (no initial build); llbitmap needs none at all: its
 * first writes mark chunks NeedSync and the lazy resync runs beside the workload. clean: llbitmap
 * on an assume-clean array, the bitmap's cost without any parity build.
 * The lazy resync is held at md's default sync_speed_min, the speed it keeps beside a continuous
 * workload: between its own slices the array is idle and would otherwise sync at full speed in
 * the other kinds' time.
 */
function createFor(kind: OverheadKind, g: Geometry): Promise<MdArray> {
  return createArray({
    name: 'bench', level: g.level, members: kindPaths(kind, g.members), chunkSize: CHUNK, bitmap: kind === 'none' ? 'none' : 'llbitmap', force: true,
    ...(kind === 'llbitmap' ? { syncSpeedMin: LAZY_KIBS, syncSpeedMax: LAZY_KIBS } : { assumeClean: true }),
  });
}

async function bitmapOverhead(): Promise<void> {
  const rows: (string | number)[][] = [];
  for (const g of GEOMETRIES) {
    const arraySize = MEMBER_DATA * dataMembers(g);
    const offsets = randomOffsets(RANDOM_OPS, 4 * KIB, arraySize, 7);
    const seqBytes = Math.min(384 * MIB, arraySize);
    const part = (n: number, i: number): [number, number] => [Math.floor((n * i) / SLICES), Math.floor((n * (i + 1)) / SLICES)];
    const loads: { label: string; run: (a: MdArray, i: number) => Promise<RunResult> }[] = [
      {
        label: '4k randwrite QD32',
        run: (a, i) => {
          const [from, to] = part(offsets.length, i);
          return randomWrites(a, offsets.slice(from, to), 4 * KIB, 32);
        },
      },
      {
        label: '1M seqwrite QD8',
        run: (a, i) => {
          const [from, to] = part(seqBytes / MIB, i);
          return sequentialWrites(a, from * MIB, (to - from) * MIB, MIB, 8);
        },
      },
    ];
    for (const w of loads) {
      // Warm-up: every kind runs two slices once, on arrays thrown away after.
      for (const kind of OVERHEAD_KINDS) {
        const a = await createFor(kind, g);
        for (let i = 0; i < 2; i++) await w.run(a, i);
        await a.stop();
      }
      const m = await medianOfInterleaved({
        kinds: OVERHEAD_KINDS, repeats: ROUNDS, slices: SLICES, subject: 'llbitmap', baseline: 'none',
        open: (kind) => createFor(kind, g),
        run: (a, i) => w.run(a, i),
        close: async (a, kind) => {
          await a.stop();
          kindPaths(kind, g.members);
        },
      });
      rows.push([g.label, w.label, ...overheadCells(m, 'llbitmap', 'none', 'clean', 0.9)]);
    }
  }
  printTable(`1. write throughput, MiB/s (fresh arrays, chunk 512 KiB, each run cut into ${SLICES} slices interleaved with the other kinds'; ${RANDOM_OPS} random 4 KiB writes, 384 MiB sequential; the median of ${ROUNDS} runs)`,
    ['array', 'workload', 'none', 'llbitmap', 'llbitmap/none', 'target', 'each run', 'none CPU us/op', 'llbitmap CPU us/op', 'CPU none/llbitmap',
      'llbitmap, assume-clean', 'that/none'], rows);
}

// ------------------------------------------------------------------ 2. time to full redundancy

/**
 * 1% of the array in 1 MiB writes: one contiguous extent (a new filesystem's metadata and first
 * files), or spread evenly over the array (the worst case for infect: every 32 MiB bitmap block
 * the writes touch twice before an unplug turns wholly NeedSync, llbitmap.md A6).
 */
async function writeOnePercent(a: MdArray, spread: boolean): Promise<number> {
  const writes = Math.max(1, Math.floor(a.size / 100 / MIB));
  const stride = spread ? Math.floor(a.size / writes / MIB) * MIB : MIB;
  const from = spread ? 0 : Math.floor((a.size * 0.37) / MIB) * MIB;
  const data = Buffer.alloc(MIB, 0x3c);
  await runQueue(writes, 8, (i) => a.write(from + i * stride, data));
  return writes * MIB;
}

type BuildKind = 'lazy' | 'kernel' | 'full';

async function timeToRedundant(): Promise<void> {
  const rows: (string | number)[][] = [];
  for (const g of GEOMETRIES) {
    for (const spread of [false, true]) {
      const result: Record<BuildKind, { seconds: number[]; synced: number }> = {
        lazy: { seconds: [], synced: 0 },
        kernel: { seconds: [], synced: 0 },
        full: { seconds: [], synced: 0 },
      };
      let written = 0;
      // Round -1 warms the JIT for all and is not counted.
      for (let round = -1; round < ROUNDS; round++) {
        for (const kind of ['lazy', 'kernel', 'full'] as const) {
          const paths = fresh(g.members);
          const start = performance.now();
          const a = await createArray({
            name: 'bench', level: g.level, members: paths, chunkSize: CHUNK, force: true, ...UNTHROTTLED,
            bitmap: kind === 'full' ? 'none' : 'llbitmap',
          });
          // 'kernel': infect raises Unwritten neighbours to NeedSync, as Linux does (llbitmap.md A6).
          if (kind === 'kernel' && a.bitmap instanceof LlBitmap) a.bitmap.infectUnwritten = true;
          written = await writeOnePercent(a, spread);
          // Fully redundant: every sync pass owed is done (lazy: the NeedSync chunks; full: everything).
          while (a.status().resyncPending !== null || a.status().sync !== null) await a.waitSync();
          const seconds = (performance.now() - start) / 1000;
          result[kind].synced = a.status().bytesSyncedTotal;
          await a.stop();
          if (round >= 0) result[kind].seconds.push(seconds);
        }
      }
      const full = median(result.full.seconds);
      const lazy = median(result.lazy.seconds);
      const kernel = median(result.kernel.seconds);
      rows.push([
        g.label, spread ? 'spread' : 'contiguous', written / MIB,
        result.lazy.synced / MIB, lazy, result.kernel.synced / MIB, kernel, result.full.synced / MIB, full,
        ratio(lazy, full), ratio(kernel, full), spread ? '-' : verdict(lazy / full, 0.05, 'most'),
      ]);
    }
  }
  printTable(`2. create -> fully redundant holding 1% written data, seconds (median of ${ROUNDS}, ${MEMBER_DATA / MIB} MiB per member, sync unthrottled)\n` +
    '   lazy: llbitmap as llraid runs it (infect leaves Unwritten chunks alone on parity levels); kernel infect: Unwritten neighbours become NeedSync, as in Linux',
  ['array', '1% written', 'written MiB', 'lazy synced MiB', 'lazy s', 'kernel-infect synced MiB', 'kernel-infect s', 'full synced MiB', 'full s', 'lazy/full', 'kernel-infect/full', 'target'], rows);
}

// ------------------------------------------------------------------ 3. full stripes against raid0

/**
 * Table 3 (members as they are) and 3b (each member limited to MEMBER_MIBS): full-stripe rows
 * against raid0 over the data members alone.
 */
async function fullStripes(limited: boolean): Promise<void> {
  const rows: (string | number)[][] = [];
  for (const g of GEOMETRIES) {
    const dd = dataMembers(g);
    const rowBytes = dd * CHUNK;
    const budget = limited ? 192 * MIB : 384 * MIB;
    const total = Math.min(Math.floor(budget / rowBytes), Math.floor((MEMBER_DATA * dd) / rowBytes)) * rowBytes;
    const got: Record<'raid0' | 'parity', number[]> = { raid0: [], parity: [] };
    for (let round = 0; round < ROUNDS; round++) {
      for (const kind of ['raid0', 'parity'] as const) {
        const paths = fresh(kind === 'raid0' ? dd : g.members);
        const files = limited ? await Promise.all(paths.map((p) => FileDevice.open(p))) : [];
        const members: (string | MemberSpec)[] = limited
          ? files.map((f, i) => ({ name: paths[i]!, device: new RateLimitedDevice(f, MEMBER_MIBS * MIB) }))
          : paths;
        const a = kind === 'raid0'
          ? await createArray({ name: 'bench', level: 0, members, chunkSize: CHUNK, bitmap: 'none', force: true })
          : await createArray({ name: 'bench', level: g.level, members, chunkSize: CHUNK, bitmap: 'llbitmap', assumeClean: true, force: true });
        const r = await sequentialWrites(a, 0, total, rowBytes, 4);
        await a.stop();
        await Promise.all(files.map((f) => f.close()));
        got[kind].push(mibPerSecond(r));
      }
    }
    const r0 = median(got.raid0);
    const p = median(got.parity);
    rows.push([g.label, `raid0 x${dd}`, rowBytes / KIB, r0, p, ratio(p, r0), verdict(p / r0, 0.7, 'least')]);
  }
  printTable(limited
    ? `3b. the same with every member limited to ${MEMBER_MIBS} MiB/s, as separate disks (median of ${ROUNDS})`
    : `3. full-stripe sequential writes (one row per request, 4 in flight), MiB/s of array data (median of ${ROUNDS})`,
  ['parity array', 'baseline', 'request KiB', 'raid0', 'parity', 'parity/raid0', 'target'], rows);
}

async function main(): Promise<void> {
  mkdirSync(DIR, { recursive: true });
  try {
    const only = process.argv[2];
    if (only === undefined || only === '1') await bitmapOverhead();
    if (only === undefined || only === '2') await timeToRedundant();
    if (only === undefined || only === '3') {
      await fullStripes(false);
      await fullStripes(true);
    }
  } finally {
    rmSync(DIR, { recursive: true, force: true });
  }
}

await main();
