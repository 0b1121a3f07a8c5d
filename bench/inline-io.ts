// What the bounded inline paths cost (positional-io.ts, nowait-io.ts). Two parts:
//
// 1. Per call, in this process: a 4 KiB read at a random offset of a file in the page cache, by
//    readSync (the unbounded inline call of before), by cachestat + preadv2(RWF_NOWAIT) through
//    koffi (the inline call on disks now), and through libuv's pool (fs.read, one at a time: what
//    a request the page cache cannot answer costs). Wall and CPU nanoseconds per call, ratio to readSync.
// 2. fio (ioengine=nbd, 4 KiB random reads and writes, QD32) against `llraid serve --file` and a
//    raid1 (llbitmap, two files), with the files on tmpfs and on ext4 (this machine's root
//    filesystem, files small enough to stay in the page cache): the build before this change
//    (BENCH_BASE_CLI, a dist/src/cli/bin.cjs), this build, and this build with LLRAID_INLINE_IO=0
//    (everything through the pool). IOPS and the server's CPU microseconds per request
//    (/proc/PID/stat utime+stime over the run), median of the rounds, contenders rotating.
// Run: node --import tsx bench/inline-io.ts (needs node scripts/build.mjs; env BENCH_SECONDS,
// BENCH_ROUNDS, BENCH_SIZE_MIB, BENCH_BASE_CLI, BENCH_EXT4_DIR, BENCH_ONLY=calls|nbd).

import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, openSync, closeSync, read, readFileSync, readSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { median, printTable, ratio } from './table.js';
import { loadNowait } from '../src/block/nowait-io.js';

const run = promisify(execFile);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 4);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const SIZE_MIB = Number(process.env.BENCH_SIZE_MIB ?? 256);
const ROOT = new URL('..', import.meta.url).pathname;
const CLI = join(ROOT, 'dist/src/cli/bin.cjs');
const BASE_CLI = process.env.BENCH_BASE_CLI;
const EXT4_DIR = process.env.BENCH_EXT4_DIR ?? tmpdir();
const TICK_US = 1e6 / Number((await run('getconf', ['CLK_TCK'])).stdout.trim());

// ---- 1. per call ----

async function perCall(): Promise<void> {
  const nowait = await loadNowait();
  if (nowait === undefined) throw new Error('koffi did not load: nothing to compare');
  const dir = mkdtempSync(join(EXT4_DIR, 'llraid-bench-inline-'));
  const path = join(dir, 'f');
  const SIZE = 64 * 1024 * 1024;
  const blocks = SIZE / 4096;
  try {
    writeFileSync(path, Buffer.alloc(SIZE, 7));
    readFileSync(path);
    const fd = openSync(path, 'r');
    const buf = Buffer.alloc(4096);
    const offsets = Float64Array.from({ length: 4096 }, () => Math.floor(Math.random() * blocks) * 4096);
    const readP = (pos: number): Promise<number> => new Promise((resolve, reject) => read(fd, buf, 0, 4096, pos, (e, n) => (e ? reject(e) : resolve(n))));
    const cases: { name: string; calls: number; run: (i: number) => number | Promise<number> }[] = [
      { name: 'readSync', calls: 200_000, run: (i) => readSync(fd, buf, 0, 4096, offsets[i & 4095]!) },
      { name: 'cachestat + preadv2 RWF_NOWAIT (koffi)', calls: 200_000, run: (i) => nowait.read(fd, buf, 0, 4096, offsets[i & 4095]!) },
      { name: 'libuv pool (fs.read)', calls: 20_000, run: (i) => readP(offsets[i & 4095]!) },
    ];
    const got = new Map(cases.map((c) => [c.name, { wall: [] as number[], cpu: [] as number[] }]));
    for (let round = 0; round < 5; round++) {
      for (let k = 0; k < cases.length; k++) {
        const c = cases[(k + round) % cases.length]!;
        for (let i = 0; i < 1000; i++) await c.run(i);
        const cpu0 = process.cpuUsage();
        const t0 = process.hrtime.bigint();
        for (let i = 0; i < c.calls; i++) {
          const n = await c.run(i);
          if (n !== 4096) throw new Error(`${c.name}: ${n} bytes`);
        }
        const wall = Number(process.hrtime.bigint() - t0) / c.calls;
        const cpu = process.cpuUsage(cpu0);
        got.get(c.name)!.wall.push(wall);
        got.get(c.name)!.cpu.push(((cpu.user + cpu.system) * 1000) / c.calls);
      }
    }
    closeSync(fd);
    const base = got.get('readSync')!;
    printTable(
      `4 KiB read from the page cache (ext4 file in ${EXT4_DIR}), one at a time, median of 5 rounds; load ${loadavg()[0]!.toFixed(2)}`,
      ['call', 'wall ns/call', 'CPU ns/call', 'wall/readSync', 'CPU/readSync'],
      cases.map((c) => {
        const g = got.get(c.name)!;
        return [c.name, median(g.wall), median(g.cpu), ratio(median(g.wall), median(base.wall)), ratio(median(g.cpu), median(base.cpu))];
      }),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---- 2. fio over NBD ----

interface Workload {
  name: string;
  rw: string;
}
const WORKLOADS: Workload[] = [
  { name: '4k randread QD32', rw: 'randread' },
  { name: '4k randwrite QD32', rw: 'randwrite' },
];

interface Build {
  name: string;
  cli: string;
  env: Record<string, string>;
}

interface Setup {
  name: string;
  /** serve's arguments after the socket. */
  args: string[];
}

function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // utime and stime are fields 14 and 15; f[0] is field 3.
  return Number(f[11]) + Number(f[12]);
}

async function waitForSocket(path: string, child: ChildProcess): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (existsSync(path)) return;
    if (child.exitCode !== null) throw new Error(`server exited with ${child.exitCode} before listening`);
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`server did not create ${path} within 10 s`);
}

/** IOPS and server CPU µs per request of one fio run. */
async function fio(uri: string, w: Workload, pid: number): Promise<{ iops: number; cpuUs: number }> {
  const t0 = cpuTicks(pid);
  const { stdout } = await run('fio', [
    '--name=bench', '--ioengine=nbd', `--uri=${uri}`, `--rw=${w.rw}`, '--bs=4k', '--iodepth=32',
    `--size=${SIZE_MIB}M`, '--time_based', `--runtime=${SECONDS}`, '--output-format=json',
  ], { maxBuffer: 16 * 1024 * 1024 });
  const ticks = cpuTicks(pid) - t0;
  const job = (JSON.parse(stdout.slice(stdout.indexOf('{'))) as { jobs: Array<Record<'read' | 'write', { iops: number; total_ios: number }>> }).jobs[0]!;
  const side = w.rw.includes('write') ? job.write : job.read;
  return { iops: side.iops, cpuUs: (ticks * TICK_US) / side.total_ios };
}

async function measure(build: Build, setup: Setup, dir: string): Promise<{ iops: number; cpuUs: number }[]> {
  const socket = join(dir, 'bench.sock');
  const child = spawn(process.execPath, [build.cli, 'serve', '--socket', socket, '--quiet', ...setup.args], { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, ...build.env } });
  try {
    await waitForSocket(socket, child);
    // Startup's CPU (loading, assembling) is not the requests'.
    await new Promise((r) => setTimeout(r, 1000));
    const out = [];
    for (const w of WORKLOADS) out.push(await fio(`nbd+unix:///?socket=${socket}`, w, child.pid!));
    return out;
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => (child.exitCode !== null ? r(undefined) : child.once('exit', r)));
    rmSync(socket, { force: true });
  }
}

async function overNbd(): Promise<void> {
  const builds: Build[] = [
    ...(BASE_CLI ? [{ name: 'before', cli: BASE_CLI, env: {} }] : []),
    { name: 'after', cli: CLI, env: {} },
    { name: 'after, LLRAID_INLINE_IO=0', cli: CLI, env: { LLRAID_INLINE_IO: '0' } },
  ];
  const shm = mkdtempSync('/dev/shm/llraid-bench-inline-');
  const ext4 = mkdtempSync(join(EXT4_DIR, 'llraid-bench-inline-'));
  try {
    const setups: Setup[] = [];
    for (const [fs, dir] of [['tmpfs', shm], ['ext4', ext4]] as const) {
      const file = join(dir, 'disk.img');
      await run('fallocate', ['-l', `${SIZE_MIB}M`, file]);
      const members = [join(dir, 'r1-a'), join(dir, 'r1-b')];
      await run(process.execPath, [CLI, 'create', '--level', '1', '--name', `bench-${fs}`, '--size', `${SIZE_MIB}M`, ...members]);
      setups.push({ name: `serve --file, ${fs}`, args: ['--file', file] }, { name: `raid1, ${fs}`, args: members });
    }
    // Warm the ext4 files into the page cache: the comparison is of the cached path.
    for (const s of setups) for (const a of s.args) if (a.startsWith('/')) readFileSync(a);
    const got = new Map<string, { iops: number[]; cpuUs: number[] }>();
    const key = (b: Build, s: Setup, w: Workload): string => `${b.name}|${s.name}|${w.name}`;
    for (let round = 0; round < ROUNDS; round++) {
      for (const s of setups) {
        for (let k = 0; k < builds.length; k++) {
          const b = builds[(k + round) % builds.length]!;
          process.stderr.write(`bench: round ${round + 1}/${ROUNDS}: ${s.name}: ${b.name} ...\n`);
          const r = await measure(b, s, shm);
          WORKLOADS.forEach((w, i) => {
            const e = got.get(key(b, s, w)) ?? { iops: [], cpuUs: [] };
            e.iops.push(r[i]!.iops);
            e.cpuUs.push(r[i]!.cpuUs);
            got.set(key(b, s, w), e);
          });
        }
      }
    }
    const rows = [];
    const base = builds[0]!;
    for (const s of setups) {
      for (const w of WORKLOADS) {
        for (const b of builds) {
          const e = got.get(key(b, s, w))!;
          const be = got.get(key(base, s, w))!;
          rows.push([s.name, w.name, b.name, median(e.iops), ratio(median(e.iops), median(be.iops)), median(e.cpuUs).toFixed(1), ratio(median(e.cpuUs), median(be.cpuUs))]);
        }
      }
    }
    printTable(
      `fio ioengine=nbd, ${SECONDS} s per run, ${SIZE_MIB} MiB files, median of ${ROUNDS} rounds; baseline: ${base.name}; load ${loadavg()[0]!.toFixed(2)}`,
      ['setup', 'workload', 'build', 'IOPS', `IOPS/${base.name}`, 'server CPU µs/req', `CPU/${base.name}`],
      rows,
    );
  } finally {
    rmSync(shm, { recursive: true, force: true });
    rmSync(ext4, { recursive: true, force: true });
  }
}

const only = process.env.BENCH_ONLY;
if (only === undefined || only === 'calls') await perCall();
if (only === undefined || only === 'nbd') await overNbd();
