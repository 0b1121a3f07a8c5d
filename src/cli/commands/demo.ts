// `llraid demo` (what `npm run demo` runs): what the lockless bitmap saves a volume that runs a
// database. A raid1 over two sparse files is filled (the database's files), then takes the
// writes a database gives a volume — small page writes spread over the whole written area and
// a write-ahead log appended and flushed at every commit — with the bitmap daemon running, and
// the power is cut in the middle of it. Reassembly resyncs what the bitmap marks. Then the same
// array on the same files, without a bitmap, takes the same workload and the same cut, and
// resyncs in full: both timed in this run, so the ratio on screen is measured.

import type { Command } from 'commander';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileDevice } from '../../block/file-device.js';
import { FaultDevice, PowerDomain, seededRandom } from '../../block/fault-device.js';
import { assembleArray, createArray, type BitmapKind, type MdArray, type SyncSummary } from '../../md/index.js';
import { formatBytes, parseSize } from '../../units/byte-sizes.js';
import { formatSyncSummary } from '../status-format.js';

const DATA_OFFSET = 1024 * 1024; // md data_offset 2048 sectors: where member data starts
const FILL_BLOCK = 1024 * 1024;
const PAGE = 8192; // a database page
const WAL_BYTES = 16 * 1024 * 1024; // the log's ring at the end of the array
const TICK_MS = 10;
/** Short daemon timings so a demo of seconds shows what minutes of a real volume would. */
const DAEMON_SLEEP_S = 1;
const BARRIER_IDLE_S = 1;

interface Options {
  size: string;
  seed: string;
  seconds: string;
  pageWrites: string;
  keep?: boolean;
}

/** The database's load: page writes and commits per second. */
interface Workload {
  seconds: number;
  pagesPerSecond: number;
  commitsPerSecond: number;
}

export function register(program: Command): void {
  program
    .command('demo')
    .description('raid1 over two sparse files runs a database-like workload, the power is cut, the bitmap-guided resync is timed against a full one')
    .option('--size <size>', 'size of each member file', '1G')
    .option('--seed <n>', 'seed of the workload and of the power cut', '7')
    .option('--seconds <n>', 'how long the workload runs before the cut', '4')
    .option('--page-writes <n>', '8 KiB page writes per second, spread over the whole volume', '400')
    .option('--keep', 'keep the member files (their directory is printed)')
    .action(async (o: Options) => {
      const dir = await mkdtemp(join(tmpdir(), 'llraid-demo-'));
      try {
        await runDemo(dir, parseSize(o.size, '--size'), Number(o.seed) || 7, {
          seconds: positive(o.seconds, '--seconds'),
          pagesPerSecond: positive(o.pageWrites, '--page-writes'),
          commitsPerSecond: 100,
        });
      } finally {
        if (!o.keep) await rm(dir, { recursive: true, force: true });
      }
    });
}

function positive(text: string, flag: string): number {
  const n = Number(text);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${flag}: expected a positive number, found ${JSON.stringify(text)}`);
  return n;
}

/** The bytes of `length` at `offset` written in generation `gen`: checkable without a copy. */
function pattern(offset: number, gen: number, length: number): Buffer {
  const b = Buffer.allocUnsafe(length);
  const word = (((offset / 512) * 2654435761) ^ (gen * 40503)) >>> 0;
  for (let k = 0; k < length; k += 4) b.writeUInt32LE((word + k) >>> 0, k);
  return b;
}

function say(line: string): void {
  process.stdout.write(`${line}\n`);
}

/** One run: the array, its power domain, and what each page must read back after the cut. */
interface Run {
  array: MdArray;
  files: FileDevice[];
  power: PowerDomain;
  /** Generation that was durable (acknowledged before a completed flush) per written page. */
  durable: Map<number, number>;
  /** Pages written since their durable generation: after a cut they may hold either. */
  unsettled: Set<number>;
}

async function open(paths: string[], seed: number, size: number, create: boolean): Promise<Pick<Run, 'files' | 'power'> & { members: { name: string; device: FaultDevice }[] }> {
  const power = new PowerDomain({ seed, mode: 'random' });
  const files = await Promise.all(paths.map((p) => FileDevice.open(p, create ? { create: { size } } : {})));
  return { files, power, members: files.map((f, i) => ({ name: paths[i]!, device: new FaultDevice(f, power, paths[i]!) })) };
}

async function runDemo(dir: string, memberSize: number, seed: number, load: Workload): Promise<void> {
  const paths = [join(dir, 'disk-a.img'), join(dir, 'disk-b.img')];
  say(`llraid demo: raid1 over two sparse ${formatBytes(memberSize)} files in ${dir}`);

  const guided = await cutAndResync(paths, memberSize, seed, load, 'llbitmap', true);
  const full = await cutAndResync(paths, memberSize, seed + 1, load, 'none', false);

  const bytesRatio = guided.summary.bytesSynced / full.summary.bytesSynced;
  const timeRatio = guided.seconds / full.seconds;
  say('');
  say(`  the same array, files and workload, in this run:`);
  say(`    bitmap-guided resync  ${formatBytes(guided.summary.bytesSynced).padStart(10)}  ${guided.seconds.toFixed(2).padStart(6)} s`);
  say(`    full resync           ${formatBytes(full.summary.bytesSynced).padStart(10)}  ${full.seconds.toFixed(2).padStart(6)} s`);
  say(`    ratio                 ${bytesRatio.toFixed(3).padStart(10)}x ${timeRatio.toFixed(3).padStart(6)}x  (bytes, time)`);
  say(`  (the demo's bitmap daemon cleans a chunk ${DAEMON_SLEEP_S + BARRIER_IDLE_S} s after its last write; a volume's default is 5 s idle + 30 s sleep, so the same`);
  say(`   load marks more chunks there: the chunks written in the last half minute before the cut)`);
}

async function cutAndResync(
  paths: string[], memberSize: number, seed: number, load: Workload, bitmap: BitmapKind, first: boolean,
): Promise<{ summary: SyncSummary; seconds: number }> {
  const { files, power, members } = await open(paths, seed, memberSize, first);
  const array = await createArray({ name: 'demo', level: 1, members, bitmap, force: true, daemonSleep: DAEMON_SLEEP_S, barrierIdle: BARRIER_IDLE_S });
  const run: Run = { array, files, power, durable: new Map(), unsettled: new Set() };
  const st0 = array.status();
  const chunks = Object.values(st0.bitmap.counts).reduce((a, b) => a + b, 0);
  say('');
  if (bitmap === 'llbitmap') {
    say(`  1. created raid1 "demo" (${st0.uuid}), ${formatBytes(array.size)}, llbitmap: ${chunks} chunks of ${formatBytes(st0.bitmap.chunkSize)}`);
    await fill(run);
    const c = array.status().bitmap.counts;
    say(`     filled all ${formatBytes(array.size)} (the database's files) and flushed; after the bitmap daemon: clean ${c.clean}, dirty ${c.dirty}`);
  } else {
    say(`  2. the same two files as a raid1 without a bitmap (new superblocks; the data stays)`);
  }

  const random = seededRandom(seed);
  const workload = await steadyLoad(run, load, random);
  say(
    `     ${load.seconds} s of database writes: ${workload.pages} page writes of 8 KiB over the whole volume, ` +
      `${workload.commits} log appends each flushed; then the power is cut mid-write`,
  );
  await array.abandon();
  await Promise.all(files.map((f) => f.close()));

  const started = process.hrtime.bigint();
  const { array: again, report } = await assembleArray({ members: paths });
  const atAssembly = again.status().bitmap.counts;
  const summary = await again.waitSync();
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  if (!summary) throw new Error(`demo: the array was ${report.unclean ? 'unclean' : 'clean'} but no resync ran`);
  if (bitmap === 'llbitmap') {
    const marked = atAssembly.needSync + atAssembly.dirty + atAssembly.syncing;
    say(`     reassembled: ${report.unclean ? 'not stopped cleanly' : 'clean'}; the bitmap marks ${marked} of ${chunks} chunks (${((100 * marked) / chunks).toFixed(2)}%)`);
  } else {
    say(`     reassembled: ${report.unclean ? 'not stopped cleanly' : 'clean'}; without a bitmap every chunk is suspect`);
  }
  say(`     ${formatSyncSummary(summary)}; ${seconds.toFixed(2)} s from assembly`);
  await verify(again, run, paths);
  return { summary, seconds };
}

/** Writes the whole array once (1 MiB at a time, 8 in flight), flushes, waits for the daemon. */
async function fill(run: Run): Promise<void> {
  const { array } = run;
  const blocks = Math.floor(array.size / FILL_BLOCK);
  for (let i = 0; i < blocks; i += 8) {
    await Promise.all(Array.from({ length: Math.min(8, blocks - i) }, (_, k) => array.write((i + k) * FILL_BLOCK, pattern((i + k) * FILL_BLOCK, 0, FILL_BLOCK))));
    // The fault devices keep what a flush has not made durable: flush as a loader would.
    if (i % 64 === 56) await array.flush();
  }
  await array.flush();
  for (let i = 0; i < 100 && array.status().bitmap.counts.dirty > 0; i++) await new Promise((r) => setTimeout(r, 100));
}

/**
 * The database: every tick, page writes at random over the data area (everything but the log)
 * and one commit — a log append followed by a flush. A page write acknowledged before a flush
 * that completed is durable and must read back after the cut; the cut comes at a random
 * member write in the last quarter of the run.
 */
async function steadyLoad(run: Run, load: Workload, random: () => number): Promise<{ pages: number; commits: number }> {
  const { array, power } = run;
  const dataPages = Math.floor((array.size - WAL_BYTES) / PAGE);
  const ticks = Math.round((load.seconds * 1000) / TICK_MS);
  const pagesPerTick = (load.pagesPerSecond * TICK_MS) / 1000;
  const commitsPerTick = (load.commitsPerSecond * TICK_MS) / 1000;
  let pages = 0;
  let commits = 0;
  let pageDebt = 0;
  let commitDebt = 0;
  let walHead = 0;
  const gens = new Map<number, number>();
  const started = performance.now();
  for (let t = 0; t < ticks && !power.isCut; t++) {
    if (t === Math.floor(ticks * 0.75)) power.cutAfterWrites(1 + Math.floor(random() * 200));
    pageDebt += pagesPerTick;
    commitDebt += commitsPerTick;
    const writes: Promise<void>[] = [];
    const written: number[] = [];
    for (; pageDebt >= 1; pageDebt--) {
      const page = Math.floor(random() * dataPages) * PAGE;
      const gen = (gens.get(page) ?? 0) + 1;
      gens.set(page, gen);
      run.unsettled.add(page);
      written.push(page);
      writes.push(array.write(page, pattern(page, gen, PAGE)).catch(() => undefined));
      pages++;
    }
    for (; commitDebt >= 1; commitDebt--) {
      const at = array.size - WAL_BYTES + walHead;
      walHead = (walHead + PAGE) % WAL_BYTES;
      writes.push(array.write(at, pattern(at, commits + 1, PAGE)).catch(() => undefined));
      commits++;
    }
    await Promise.all(writes);
    const flushed = await array.flush().then(() => true, () => false);
    if (flushed && !power.isCut) {
      for (const page of written) {
        run.durable.set(page, gens.get(page)!);
        run.unsettled.delete(page);
      }
    }
    const due = started + (t + 1) * TICK_MS - performance.now();
    if (due > 0) await new Promise((r) => setTimeout(r, due));
  }
  await power.cut();
  return { pages, commits };
}

/** Durable pages read back, untouched fill reads back where sampled, and the mirrors are identical. */
async function verify(array: MdArray, run: Run, paths: string[]): Promise<void> {
  let checked = 0;
  for (const [page, gen] of run.durable) {
    if (run.unsettled.has(page)) continue;
    if (!(await array.read(page, PAGE)).equals(pattern(page, gen, PAGE))) throw new Error(`demo: durable page at ${page} does not read back`);
    checked++;
  }
  await array.stop();
  const [a, b] = await Promise.all(paths.map((p) => FileDevice.open(p, { readOnly: true })));
  let differing = 0;
  for (let off = DATA_OFFSET; off < a!.size; off += 4 * FILL_BLOCK) {
    const n = Math.min(4 * FILL_BLOCK, a!.size - off);
    const [x, y] = await Promise.all([a!.read(off, n), b!.read(off, n)]);
    if (!x.equals(y)) differing++;
  }
  await Promise.all([a!.close(), b!.close()]);
  if (differing > 0) throw new Error(`demo: mirrors differ in ${differing} regions after resync`);
  say(`     verified: ${checked} durable page writes read back; the two mirrors are identical byte for byte`);
}
