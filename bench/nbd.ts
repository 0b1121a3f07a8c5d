// Benchmark of the NBD server: `llraid serve` (one file, and the arrays a CSI volume is) against
// `nbdkit file` and `qemu-nbd` on the same tmpfs, all driven by the same client (fio
// ioengine=nbd, one connection per job). Four tables:
//  a. CPU per request: the server's utime+stime (all its threads, /proc/PID/stat) over the measured
//     part of the fio run divided by the I/Os fio completed in it. This does not depend on how fast
//     the machine is, so it is the headline: --file against nbdkit, raid1 against --file.
//  b. throughput: the arrays against one file (raid5's random reads against raid0 over its data
//     members), and --file against nbdkit.
//  c. memory: each server's RSS idle (after start, before fio), its peak under the whole run and
//     at rest after it (REST_MS or more later: what a volume costs most of its life), and the CSI
//     node plugin's idle RSS.
//  d. several connections: fio numjobs=1, 2, 4 (one connection each, QD32 on each) on one raid1
//     volume (an engine of its own, whose peak RSS table c reports apart), with the shares of the
//     run its engine's thread spent on a CPU and waiting on a run queue for one (a thread that
//     waits is short of a core, not of work); then again with the engine's thread on a core of
//     its own (taskset: CPU 0, fio on the others); then QD32 split over 2 and 4 connections on
//     its own core (SPLIT), reported.
// Every server runs every workload once per round, the servers of a round side by side and each
// workload run by all of them back to back (round()), their order rotating from round to round;
// the median of the rounds is reported: on a shared 2-core machine one run of a few seconds moves
// by ±15%, which is more than the margins the targets ask about.
// The members are files on one tmpfs, which share one memory bus: a mirror's second member write
// slows the first, so its 1M writes can never keep up with one file there. The 1M write is run
// again, and judged, with members that have their own bandwidth (rated-members.ts: nbdkit's rate
// filter behind nbdfuse, BENCH_NBD_MEMBER_MIBS MiB/s each, default 256): `--file` on one such
// member, raid1 on two, raid10 on four (servers file-rated, raid1-rated, raid10-rated).
// The llraid servers run with the V8 flags and environment the CSI driver gives its engines
// (src/cli/engine-command.ts, src/engine/supervisor.ts).
// Run: npm run bench:nbd (builds first). Env: BENCH_SECONDS (per workload, default 5),
// BENCH_NBD_ROUNDS (3), BENCH_SIZE_MIB (1024); BENCH_NBD_QUICK=1 is 2 s, 1 round, 256 MiB.
// BENCH_NBD_SERVERS (a comma list of file, raid1, raid1-conns, raid10, raid5, raid0, nbdkit,
// qemu-nbd) and BENCH_NBD_WORKLOADS (a comma list of fio rw names: randread, randwrite, read,
// write) run only those; the tables above need every server and workload, so a chosen subset
// prints one table of what ran instead (and raid5's random reads against raid0 when both ran
// them).

import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { median, printTable, ratio, verdict, type Cell } from './table.js';
import { anonKiB, cpuSeconds, rssKiB, schedSeconds } from './proc.js';
import { ENGINE_NODE_FLAGS } from '../src/cli/engine-command.js';
import { engineEnvironment } from '../src/engine/supervisor.js';
import { startRatedMembers, type RatedMembers } from './rated-members.js';

const run = promisify(execFile);
const QUICK = process.env.BENCH_NBD_QUICK === '1';
const SECONDS = Number(process.env.BENCH_SECONDS ?? (QUICK ? 2 : 5));
const ROUNDS = Number(process.env.BENCH_NBD_ROUNDS ?? (QUICK ? 1 : 3));
const SIZE_MIB = Number(process.env.BENCH_SIZE_MIB ?? (QUICK ? 256 : 1024));
/** fio's ramp: not counted in its results, so not in the CPU either. */
const RAMP_MS = 1000;
/** Bandwidth of each member of the rated servers. */
const MEMBER_MIBS = Number(process.env.BENCH_NBD_MEMBER_MIBS ?? 256);
/** Room for the superblock and bitmap in each member, so every array holds SIZE_MIB. */
const SLACK_MIB = 64;
const ROOT = new URL('..', import.meta.url).pathname;

interface Workload {
  name: string;
  rw: string;
  bs: string;
  iodepth: number;
  /** Connections (fio jobs), each with the queue depth above (fio's numjobs clones the job). */
  jobs: number;
  /** Which number of fio's JSON output to report. */
  metric: 'iops' | 'MiB/s';
  /**
   * The server's main thread on CPU 0 and fio on the others (pinRun): the engine's event loop has
   * a core of its own, as on a node with cores to spare, rather than sharing two with fio's jobs.
   */
  pinned?: boolean;
}

const WORKLOADS: Workload[] = [
  { name: '4k randread QD32', rw: 'randread', bs: '4k', iodepth: 32, jobs: 1, metric: 'iops' },
  { name: '4k randwrite QD32', rw: 'randwrite', bs: '4k', iodepth: 32, jobs: 1, metric: 'iops' },
  { name: '1M seq read QD8', rw: 'read', bs: '1M', iodepth: 8, jobs: 1, metric: 'MiB/s' },
  { name: '1M seq write QD8', rw: 'write', bs: '1M', iodepth: 8, jobs: 1, metric: 'MiB/s' },
];

/**
 * Table d: the 4K workloads over 1, 2 and 4 connections, QD32 on each, as fio's numjobs gives it
 * and as a multi-conn client keeps it (nbdcopy's requests in flight, the kernel's queue depth, are
 * per connection).
 */
const MULTI: Workload[] = [false, true].flatMap((pinned) => [1, 2, 4].flatMap((jobs) => ['randread', 'randwrite'].map((rw) => ({
  name: `4k ${rw} ${jobs} conn${pinned ? ', own core' : ''}`, rw, bs: '4k', iodepth: 32, jobs, metric: 'iops' as const, pinned,
}))));

/**
 * Table d, second part: QD32 split over 2 and 4 connections, the engine on its own core, against
 * MULTI's one connection. Reported, not judged: a connection with 8 requests in flight gives the
 * engine 8 per socket read and per reply write where one connection gives it 16, so its system
 * time per request rises with the split whatever the engine does (one thread, one read(2) and
 * one writev(2) per socket and turn).
 */
const SPLIT: Workload[] = [2, 4].flatMap((jobs) => ['randread', 'randwrite'].map((rw) => ({
  name: `4k ${rw} ${jobs} conn, QD${32 / jobs} each, own core`, rw, bs: '4k', iodepth: 32 / jobs, jobs, metric: 'iops' as const, pinned: true,
})));

interface Result {
  /** IOPS or MiB/s (Workload.metric). */
  value: number;
  /** Server CPU µs per completed request. */
  cpuUs: number;
  iops: number;
  /**
   * Shares of the measured part the server's main thread (an engine's event loop) spent on a CPU
   * and waiting on a run queue for one (schedSeconds): a thread that waits was short of CPU.
   */
  onCpu: number;
  waiting: number;
}

interface Server {
  /** The name BENCH_NBD_SERVERS chooses it by. */
  key: string;
  name: string;
  workloads: Workload[];
  start(socket: string): ChildProcess;
}

function cliPath(): string {
  const cli = join(ROOT, 'dist/src/cli/bin.cjs');
  if (!existsSync(cli)) throw new Error(`expected the built CLI at ${cli}: run npm run build first`);
  return cli;
}

interface ArraySpec { level: number; members: number; memberMiB: number }
const ARRAYS: Record<string, ArraySpec> = {
  raid1: { level: 1, members: 2, memberMiB: SIZE_MIB + SLACK_MIB },
  // Table d's raid1, an engine of its own (servers() says why).
  'raid1-conns': { level: 1, members: 2, memberMiB: SIZE_MIB + SLACK_MIB },
  raid10: { level: 10, members: 4, memberMiB: SIZE_MIB / 2 + SLACK_MIB },
  raid5: { level: 5, members: 4, memberMiB: Math.ceil(SIZE_MIB / 3) + SLACK_MIB },
  // raid5's data members alone: the baseline of its random reads (servers() says why it runs every workload).
  raid0: { level: 0, members: 3, memberMiB: Math.ceil(SIZE_MIB / 3) + SLACK_MIB },
};

/** The servers of one file, each its own (round() runs them side by side): allocated, as the arrays' members are. */
const SINGLE_FILE = ['nbdkit', 'file', 'qemu-nbd'];
const diskPath = (dir: string, key: string): string => join(dir, `disk-${key}.img`);

const memberPaths = (dir: string, array: string): string[] =>
  Array.from({ length: ARRAYS[array]!.members }, (_, i) => join(dir, `${array}-${i}.img`));

/** The 1M write of the rated servers, whose members have a bandwidth of their own. */
const RATED_WRITE = WORKLOADS[3]!;
/** Rated servers by key: what they serve (`file`, or an array of ARRAYS) on members of their own. */
const RATED: Record<string, { of: string; members: number }> = {
  'file-rated': { of: 'file', members: 1 },
  'raid1-rated': { of: 'raid1', members: 2 },
  'raid10-rated': { of: 'raid10', members: 4 },
};
/** Where the rated members of `key` are (FUSE files; made by startRatedMembers under this directory). */
const ratedPaths = (dir: string, key: string): string[] =>
  Array.from({ length: RATED[key]!.members }, (_, i) => join(dir, key, `member-${i}`, 'fuse', 'disk'));

function servers(dir: string): Server[] {
  const file = (key: string): string => diskPath(dir, key);
  const llraid = (args: string[]) => (socket: string) =>
    // As the CSI driver runs an engine (src/cli/engine-command.ts, src/engine/supervisor.ts).
    spawn(process.execPath, [...ENGINE_NODE_FLAGS, cliPath(), 'serve', '--socket', socket, '--quiet', ...args], { stdio: ['ignore', 'ignore', 'inherit'], env: engineEnvironment() });
  // nbdkit beside --file, each array beside the next: round() runs a workload's servers in this
  // order (rotated), so the compared ones run a few seconds apart.
  return [
    {
      key: 'nbdkit',
      name: 'nbdkit file',
      workloads: WORKLOADS,
      start: (socket) => spawn('nbdkit', ['--foreground', '--exit-with-parent', '--unix', socket, 'file', `file=${file('nbdkit')}`], { stdio: ['ignore', 'ignore', 'inherit'] }),
    },
    { key: 'file', name: 'llraid file', workloads: WORKLOADS, start: llraid(['--file', file('file')]) },
    { key: 'raid1', name: 'llraid raid1', workloads: WORKLOADS, start: llraid(memberPaths(dir, 'raid1')) },
    // Table d on a raid1 engine of its own: four connections with QD32 each keep 128 requests in
    // flight, four times the rest of the bench, and what an engine grows to under them (V8's heap,
    // malloc's) it keeps; on the engine of tables a-c it raised the next round's 1M read peak from
    // 64 to 74 MiB. Table c reports this engine's peak apart.
    { key: 'raid1-conns', name: 'llraid raid1, several connections', workloads: [...MULTI, ...SPLIT], start: llraid(memberPaths(dir, 'raid1-conns')) },
    { key: 'raid10', name: 'llraid raid10', workloads: WORKLOADS, start: llraid(memberPaths(dir, 'raid10')) },
    { key: 'raid5', name: 'llraid raid5', workloads: WORKLOADS, start: llraid(memberPaths(dir, 'raid5')) },
    // raid0 runs every workload raid5 runs, in the same order, though only its random reads are
    // judged (against raid5's): each round's random reads then find the same contents on both. A
    // 4 KiB pread of a tmpfs hole copies the kernel's zero page: fio psync on one 1 GiB tmpfs
    // file spent 0.65 µs of CPU per random read of it sparse, 1.3 µs written. Run on its random
    // reads alone on sparse members, raid0 read holes in every round while raid5 read data in
    // rounds 2 and 3, 0.4-0.5 µs per request cheaper (5.2-5.4 against 4.9 µs), though the two
    // serve such a read by the same direct member read (raid0.ts, stripe-engine.ts readNow).
    // main() writes every member through before round 1, so no server reads holes.
    { key: 'raid0', name: 'llraid raid0', workloads: WORKLOADS, start: llraid(memberPaths(dir, 'raid0')) },
    {
      key: 'qemu-nbd',
      name: 'qemu-nbd',
      workloads: WORKLOADS,
      start: (socket) => spawn('qemu-nbd', ['--persistent', '--shared=8', '--format=raw', '--cache=writeback', '--aio=threads', `--socket=${socket}`, file('qemu-nbd')], { stdio: ['ignore', 'ignore', 'inherit'] }),
    },
    ...Object.entries(RATED).map(([key, r]): Server => ({
      key,
      name: `llraid ${r.of}, ${MEMBER_MIBS} MiB/s members`,
      workloads: [RATED_WRITE],
      start: llraid(r.of === 'file' ? ['--file', ratedPaths(dir, key)[0]!] : ratedPaths(dir, key)),
    })),
  ];
}

/** A comma list from the environment, or undefined when unset (everything runs). */
function chosen(name: string, known: readonly string[]): Set<string> | undefined {
  const raw = process.env[name];
  if (raw === undefined || raw.trim() === '') return undefined;
  const picked = new Set(raw.split(',').map((x) => x.trim()).filter((x) => x !== ''));
  for (const p of picked) if (!known.includes(p)) throw new Error(`${name}: expected some of ${known.join(', ')}, found ${p}`);
  return picked;
}

/** The servers and workloads BENCH_NBD_SERVERS and BENCH_NBD_WORKLOADS choose; `all` when both are unset. */
function selection(all: Server[]): { list: Server[]; subset: boolean } {
  const names = chosen('BENCH_NBD_SERVERS', all.map((s) => s.key));
  const rws = chosen('BENCH_NBD_WORKLOADS', [...new Set(WORKLOADS.map((w) => w.rw))]);
  if (names === undefined && rws === undefined) return { list: all, subset: false };
  const list = all
    .filter((s) => names === undefined || names.has(s.key))
    .map((s) => ({ ...s, workloads: s.workloads.filter((w) => rws === undefined || rws.has(w.rw)) }))
    .filter((s) => s.workloads.length > 0);
  if (list.length === 0) throw new Error('BENCH_NBD_SERVERS and BENCH_NBD_WORKLOADS leave nothing to run');
  return { list, subset: true };
}

/** A file of `mib` MiB of zeros, every page written (not a hole, not fallocate's unwritten pages). */
async function writeZeros(path: string, mib: number): Promise<void> {
  await run('dd', ['if=/dev/zero', `of=${path}`, 'bs=1M', `count=${mib}`, 'status=none']);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function waitForSocket(path: string, child: ChildProcess): Promise<void> {
  for (let i = 0; i < 600; i++) {
    if (existsSync(path)) return;
    if (child.exitCode !== null) throw new Error(`server exited with ${child.exitCode} before listening`);
    await sleep(50);
  }
  throw new Error(`server did not create ${path} within 30 s`);
}

/** What fio's JSON report needs of execFile's output buffer. */
const FIO_OUTPUT = { maxBuffer: 16 * 1024 * 1024 };

/**
 * `command` on every CPU but 0 while the main thread of `pid` (an engine's event loop) runs on
 * CPU 0 (taskset), then that thread back on every CPU. Its other threads (libuv's pool, V8's) stay
 * free to run anywhere: pinned with it, they took the event loop's core from it (raid1 4 KiB
 * writes 132k → 112k a second at one connection). Needs two CPUs: with one there is none to give.
 */
async function pinRun(pid: number, command: string, args: string[]): Promise<{ stdout: string }> {
  const cpus = availableParallelism();
  if (cpus < 2) throw new Error(`a pinned workload needs at least 2 CPUs, found ${cpus}`);
  await run('taskset', ['--pid', '--cpu-list', '0', String(pid)]);
  try {
    return await run('taskset', ['--cpu-list', `1-${cpus - 1}`, command, ...args], FIO_OUTPUT);
  } finally {
    await run('taskset', ['--pid', '--cpu-list', `0-${cpus - 1}`, String(pid)]);
  }
}

/** One fio run against the server `pid`, with the server's CPU over fio's measured part. */
async function fio(uri: string, w: Workload, pid: number): Promise<Result> {
  const args = [
    '--name=bench', '--ioengine=nbd', `--uri=${uri}`, `--rw=${w.rw}`, `--bs=${w.bs}`, `--iodepth=${w.iodepth}`,
    `--numjobs=${w.jobs}`, '--group_reporting', `--size=${SIZE_MIB}M`, '--time_based', `--runtime=${SECONDS}`,
    `--ramp_time=${RAMP_MS / 1000}`, '--output-format=json',
  ];
  let cpuStart = NaN;
  let schedStart = { onCpu: NaN, waiting: NaN };
  let clockStart = NaN;
  const mark = setTimeout(() => {
    cpuStart = cpuSeconds(pid);
    schedStart = schedSeconds(pid);
    clockStart = performance.now();
  }, RAMP_MS);
  const { stdout } = await (w.pinned ? pinRun(pid, 'fio', args) : run('fio', args, FIO_OUTPUT));
  const cpuEnd = cpuSeconds(pid);
  const schedEnd = schedSeconds(pid);
  const elapsed = (performance.now() - clockStart) / 1000;
  clearTimeout(mark);
  // The nbd engine prints a line before the JSON document.
  type Side = { iops: number; bw_bytes: number; total_ios: number };
  const job = (JSON.parse(stdout.slice(stdout.indexOf('{'))) as { jobs: Array<Record<'read' | 'write', Side>> }).jobs[0]!;
  const side = w.rw.includes('write') ? job.write : job.read;
  return {
    value: w.metric === 'iops' ? side.iops : side.bw_bytes / 1048576,
    cpuUs: ((cpuEnd - cpuStart) * 1e6) / side.total_ios,
    iops: side.iops,
    onCpu: (schedEnd.onCpu - schedStart.onCpu) / elapsed,
    waiting: (schedEnd.waiting - schedStart.waiting) / elapsed,
  };
}

/** RSS and its anonymous part (the process's own memory), KiB. */
interface Memory { rss: number; anon: number }
const memory = (pid: number): Memory => ({ rss: rssKiB(pid), anon: anonKiB(pid) });
const maxMemory = (a: Memory, b: Memory): Memory => ({ rss: Math.max(a.rss, b.rss), anon: Math.max(a.anon, b.anon) });

/** How long after its last workload a server's memory at rest is taken, at least: its pools let go a second after their last use. */
const REST_MS = 3000;

/** A server started for one round: its process, its RSS idle and the peak seen so far. */
interface Running {
  server: Server;
  child: ChildProcess;
  socket: string;
  uri: string;
  idle: Memory;
  peak: Memory;
}

/** Starts a server; resolves once it listens. */
async function start(server: Server, dir: string): Promise<Running> {
  const socket = join(dir, `${server.name.replace(/\W+/g, '-')}.sock`);
  const child = server.start(socket);
  try {
    await waitForSocket(socket, child);
  } catch (err) {
    await stop(child, socket);
    throw err;
  }
  return { server, child, socket, uri: `nbd+unix:///?socket=${socket}`, idle: { rss: 0, anon: 0 }, peak: { rss: 0, anon: 0 } };
}

async function stop(child: ChildProcess, socket: string): Promise<void> {
  child.kill('SIGTERM');
  await new Promise((r) => (child.exitCode !== null ? r(undefined) : child.once('exit', r)));
  rmSync(socket, { force: true });
}

/**
 * One round: every server started at once, then the workloads one at a time, each run by every
 * server that has it, back to back, before the next workload (`order`: the servers' order in
 * this round). A ratio compares two servers' runs of the same workload a few seconds apart:
 * measured a server's whole run apart (half a minute), the drift of this shared machine moved
 * ratios by up to 0.4 between runs of the same code. Each server still runs its own workloads
 * in their order (raid0 and raid5 read what their own writes left: servers()).
 */
async function round(order: Server[], dir: string, label: string): Promise<Map<Server, Measured>> {
  const running: Running[] = [];
  const sampler = setInterval(() => {
    for (const r of running) r.peak = maxMemory(r.peak, memory(r.child.pid!));
  }, 100);
  try {
    for (const s of order) running.push(await start(s, dir));
    await sleep(1000);
    for (const r of running) r.idle = memory(r.child.pid!);
    const results = new Map<Server, Result[]>(order.map((s) => [s, []]));
    // In the servers' own order, whichever server comes first (a rated one has only the 1M write).
    const workloads = [...WORKLOADS, ...MULTI, ...SPLIT].filter((w) => order.some((s) => s.workloads.includes(w)));
    for (const w of workloads) {
      for (const r of running) {
        if (!r.server.workloads.includes(w)) continue;
        process.stderr.write(`bench: ${label}: ${w.name}: ${r.server.name} ...\n`);
        results.get(r.server)!.push(await fio(r.uri, w, r.child.pid!));
      }
    }
    for (const r of running) r.peak = maxMemory(r.peak, memory(r.child.pid!));
    await sleep(REST_MS);
    return new Map(running.map((r) => [r.server, { results: results.get(r.server)!, idle: r.idle, peak: r.peak, rest: memory(r.child.pid!) }]));
  } finally {
    clearInterval(sampler);
    for (const r of running) await stop(r.child, r.socket);
  }
}

interface Measured { results: Result[]; idle: Memory; peak: Memory; rest: Memory }

/** The CSI node plugin's RSS, idle, started as scripts/test.d/50-csi-sanity.sh starts it. */
async function pluginMemory(dir: string): Promise<Memory> {
  const work = join(dir, 'csi');
  const disks = ['disk-a', 'disk-b', 'disk-c'].map((d) => join(work, d));
  for (const d of [...disks, join(work, 'kubelet')]) mkdirSync(d, { recursive: true });
  const socket = join(work, 'csi.sock');
  const child = spawn(process.execPath, [cliPath(), 'csi', '--endpoint', `unix://${socket}`, '--node-id', 'bench-node',
    '--disks', disks.join(','), '--attach', 'fuse', '--run-dir', join(work, 'run'), '--kubelet-dir', join(work, 'kubelet')],
  { stdio: ['ignore', 'ignore', 'inherit'] });
  try {
    await waitForSocket(socket, child);
    await sleep(2000);
    return memory(child.pid!);
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => (child.exitCode !== null ? r(undefined) : child.once('exit', r)));
  }
}

const mib = (kib: number): string => (kib / 1024).toFixed(1);
const load = (): string => loadavg().map((l) => l.toFixed(2)).join(' ');

async function main(): Promise<void> {
  const dir = mkdtempSync('/dev/shm/llraid-bench-nbd-');
  const loadBefore = load();
  const rated: RatedMembers[] = [];
  try {
    const { list, subset } = selection(servers(dir));
    const keys = new Set(list.map((s) => s.key));
    // Every file and member written through (zeros) before the first round: a read of a tmpfs
    // hole copies the kernel's zero page, about half the CPU of a read of data (raid0's comment
    // in servers()), and a page fallocate left unwritten reads the same way; qemu-nbd read such a
    // file at 1.4k IOPS (64k once written). Each server then reads data from its first round on.
    for (const k of SINGLE_FILE) if (keys.has(k)) await writeZeros(diskPath(dir, k), SIZE_MIB);
    for (const [name, a] of Object.entries(ARRAYS)) {
      if (!keys.has(name)) continue;
      for (const path of memberPaths(dir, name)) await writeZeros(path, a.memberMiB);
      await run(process.execPath, [cliPath(), 'create', '--level', String(a.level), '--name', `bench-${name}`,
        '--size', `${a.memberMiB}M`, ...memberPaths(dir, name)]);
    }
    for (const [key, r] of Object.entries(RATED)) {
      if (!keys.has(key)) continue;
      const memberMiB = r.of === 'file' ? SIZE_MIB : ARRAYS[r.of]!.memberMiB;
      const members = await startRatedMembers(join(dir, key), r.members, memberMiB * 1048576, MEMBER_MIBS * 1048576);
      rated.push(members);
      if (r.of !== 'file') {
        const a = ARRAYS[r.of]!;
        await run(process.execPath, [cliPath(), 'create', '--level', String(a.level), '--name', `bench-${key}`, ...members.paths]);
      }
    }
    const got = new Map(list.map((s) => [s.name, { runs: s.workloads.map((): Result[] => []), idle: [] as Memory[], rest: [] as Memory[], peak: { rss: 0, anon: 0 } }]));
    for (let r = 0; r < ROUNDS; r++) {
      const order = list.map((_, k) => list[(k + r) % list.length]!);
      const measured = await round(order, dir, `round ${r + 1}/${ROUNDS}`);
      for (const [s, m] of measured) {
        const entry = got.get(s.name)!;
        m.results.forEach((v, i) => entry.runs[i]!.push(v));
        entry.idle.push(m.idle);
        entry.rest.push(m.rest);
        entry.peak = maxMemory(entry.peak, m.peak);
      }
    }
    const plugin = subset ? undefined : await pluginMemory(dir);
    const loadAfter = load();

    /** The median of a server's runs of `w`; NaN (printed '-') for a server not run. */
    const pick = (server: string, w: Workload, f: (r: Result) => number): number => {
      const s = list.find((x) => x.name === server);
      if (s === undefined) return NaN;
      return median(got.get(server)!.runs[s.workloads.indexOf(w)]!.map(f));
    };
    const ran = (server: string): boolean => list.some((x) => x.name === server);
    const value = (server: string, w: Workload): number => pick(server, w, (r) => r.value);
    const cpu = (server: string, w: Workload): number => pick(server, w, (r) => r.cpuUs);
    const share = (server: string, w: Workload, of: 'onCpu' | 'waiting'): string => `${Math.round(pick(server, w, (r) => r[of]) * 100)}%`;
    const head = `fio ioengine=nbd, ${SECONDS} s per workload after a ${RAMP_MS / 1000} s ramp, ${SIZE_MIB} MiB volumes on tmpfs, ` +
      `median of ${ROUNDS} rounds; load average before ${loadBefore}, after ${loadAfter}`;

    if (subset || plugin === undefined) {
      printTable(`chosen servers and workloads (BENCH_NBD_SERVERS, BENCH_NBD_WORKLOADS); ${head}`,
        ['server', 'workload', 'unit', 'value', 'CPU µs/IO', 'main thread on a CPU', 'waiting for one', 'each round'],
        list.flatMap((s) => s.workloads.map((w) => [s.name, w.name, w.metric, value(s.name, w), cpu(s.name, w),
          share(s.name, w, 'onCpu'), share(s.name, w, 'waiting'),
          got.get(s.name)!.runs[s.workloads.indexOf(w)]!.map((r) => Math.round(r.value)).join(' ')])));
      printTable(`memory of the chosen servers: RSS MiB idle (median), peak over the whole run, at rest ${REST_MS / 1000} s after it (median), and the anonymous part`,
        ['server', 'idle RSS', 'idle anon', 'peak RSS', 'peak anon', 'rest RSS', 'rest anon'],
        list.map((s) => {
          const e = got.get(s.name)!;
          return [s.name, mib(median(e.idle.map((m) => m.rss))), mib(median(e.idle.map((m) => m.anon))), mib(e.peak.rss), mib(e.peak.anon),
            mib(median(e.rest.map((m) => m.rss))), mib(median(e.rest.map((m) => m.anon)))];
        }));
      const ratedName = (k: string): string | undefined => list.find((x) => x.key === k)?.name;
      for (const k of ['raid1-rated', 'raid10-rated']) {
        const [array, file] = [ratedName(k), ratedName('file-rated')];
        if (array === undefined || file === undefined) continue;
        const [a, f] = [value(array, RATED_WRITE), value(file, RATED_WRITE)];
        console.log(`   ${array} against --file on one such member, ${RATED_WRITE.name}: ${a.toFixed(1)} / ${f.toFixed(1)} MiB/s = ` +
          `${ratio(a, f)} ${verdict(a / f, 0.9, 'least')}`);
      }
      const randread = (name: string): Workload | undefined => list.find((s) => s.name === name)?.workloads.find((w) => w === WORKLOADS[0]);
      if (randread('llraid raid5') !== undefined && randread('llraid raid0') !== undefined) {
        const [r5, r0] = [value('llraid raid5', WORKLOADS[0]!), value('llraid raid0', WORKLOADS[0]!)];
        console.log(`   raid5 (4 members) 4k randread against raid0 over its 3 data members: ${Math.round(r5)} / ${Math.round(r0)} IOPS = ` +
          `${ratio(r5, r0)} ${verdict(r5 / r0, 0.9, 'least')}`);
      }
      return;
    }

    const isWrite = (w: Workload): boolean => w.rw.includes('write');
    const cpuRow = (w: Workload): Cell[] => {
      const [file, nbdkit, r1, r10] = [cpu('llraid file', w), cpu('nbdkit file', w), cpu('llraid raid1', w), cpu('llraid raid10', w)];
      const mirrorTarget = isWrite(w) ? 1.5 : 1.1;
      return [w.name, file, nbdkit, cpu('qemu-nbd', w), r1, r10, cpu('llraid raid5', w),
        ratio(file, nbdkit), verdict(file / nbdkit, 1.0, 'most'), ratio(r1, file), verdict(r1 / file, mirrorTarget, 'most'),
        ratio(r10, file), verdict(r10 / file, mirrorTarget, 'most')];
    };
    printTable(`a. server CPU µs per request (utime+stime of all threads / completed I/Os); ${head}`,
      ['workload', 'llraid file', 'nbdkit', 'qemu-nbd', 'raid1', 'raid10', 'raid5', 'file/nbdkit', 'target', 'raid1/file', 'target',
        'raid10/file', 'target'],
      WORKLOADS.map(cpuRow));
    if (ran('llraid raid0')) console.log(`   raid0 (3 members) 4k randread: ${cpu('llraid raid0', WORKLOADS[0]!).toFixed(2)} µs per request`);

    // The 1M write is judged with rated members (the last row); on tmpfs it is reported.
    const arrayTargets = [0.95, 0.65, 0.95, NaN];
    const judge = (v: number, target: number): Cell => (Number.isNaN(target) ? 'reported' : verdict(v, target, 'least'));
    const rows: Cell[][] = WORKLOADS.map((w, i) => {
      const file = value('llraid file', w);
      const [r1, r10] = [value('llraid raid1', w), value('llraid raid10', w)];
      return [w.name, w.metric, file, value('nbdkit file', w), value('qemu-nbd', w), r1, r10, value('llraid raid5', w),
        ratio(file, value('nbdkit file', w)), ratio(r1, file), judge(r1 / file, arrayTargets[i]!),
        ratio(r10, file), judge(r10 / file, arrayTargets[i]!)];
    });
    const [ratedFile, rated1, rated10] = ['file-rated', 'raid1-rated', 'raid10-rated'].map((k) => value(list.find((x) => x.key === k)?.name ?? '', RATED_WRITE));
    rows.push([`${RATED_WRITE.name}, ${MEMBER_MIBS} MiB/s members`, RATED_WRITE.metric, ratedFile!, '-', '-', rated1!, rated10!, '-', '-',
      ratio(rated1!, ratedFile!), verdict(rated1! / ratedFile!, 0.9, 'least'), ratio(rated10!, ratedFile!), verdict(rated10! / ratedFile!, 0.9, 'least')]);
    printTable(`b. throughput (IOPS or MiB/s); ${head}; the last row's members are files behind nbdkit's rate filter seen through nbdfuse ` +
      `(one for --file, two for raid1, four for raid10)`,
      ['workload', 'unit', 'llraid file', 'nbdkit', 'qemu-nbd', 'raid1', 'raid10', 'raid5', 'file/nbdkit', 'raid1/file', 'target', 'raid10/file', 'target'],
      rows);
    if (ran('llraid raid5') && ran('llraid raid0')) {
      const [r5, r0] = [value('llraid raid5', WORKLOADS[0]!), value('llraid raid0', WORKLOADS[0]!)];
      console.log(`   raid5 (4 members) 4k randread against raid0 over its 3 data members: ${Math.round(r5)} / ${Math.round(r0)} IOPS = ` +
        `${ratio(r5, r0)} ${verdict(r5 / r0, 0.9, 'least')}`);
    }

    printTable(`c. memory: RSS MiB idle (1 s after start, median), peak (whole run, ${ROUNDS} rounds, QD up to 32; table d's engine up to 4 x 32) and at rest ` +
      `${REST_MS / 1000} s after the run (median), and the anonymous part (RssAnon: the process's own; the rest is file pages ` +
      `such as the node binary, shared by every engine); ${head}`,
    ['server', 'idle RSS', 'target', 'idle anon', 'peak RSS', 'target', 'peak anon', 'rest RSS', 'rest anon'],
    [...list.filter((s) => !(s.key in RATED)).map((s) => {
      const e = got.get(s.name)!;
      const idle = median(e.idle.map((m) => m.rss));
      const judged = ['llraid file', 'llraid raid1', 'llraid raid5'].includes(s.name);
      return [s.name, mib(idle), judged ? verdict(idle / 1024, 48, 'most') : '-', mib(median(e.idle.map((m) => m.anon))),
        mib(e.peak.rss), judged ? verdict(e.peak.rss / 1024, 64, 'most') : '-', mib(e.peak.anon),
        mib(median(e.rest.map((m) => m.rss))), mib(median(e.rest.map((m) => m.anon)))];
    }), ['llraid csi (node plugin, idle)', mib(plugin.rss), '-', mib(plugin.anon), '-', '-', '-', '-', '-']]);

    const conns = 'llraid raid1, several connections';
    if (ran(conns)) {
      const one = (w: Workload): Workload => MULTI.find((m) => m.jobs === 1 && m.rw === w.rw && m.pinned === w.pinned)!;
      printTable(`d. several connections on one raid1 volume (fio numjobs, one connection each with QD32; "own core": the engine's ` +
        `event loop on CPU 0, fio on the others; the last rows split QD32 over the connections, reported, not judged: ` +
        `fewer requests per socket read and reply write); ${head}`,
        ['workload', 'IOPS', 'CPU µs/IO', 'engine thread on a CPU', 'waiting for a CPU', 'IOPS / 1 conn', 'target'],
        [...MULTI, ...SPLIT].map((w) => {
          const [iops, base] = [value(conns, w), value(conns, one(w))];
          const judged = w.jobs > 1 && MULTI.includes(w);
          return [w.name, iops, cpu(conns, w), share(conns, w, 'onCpu'), share(conns, w, 'waiting'),
            ratio(iops, base), judged ? verdict(iops / base, 0.95, 'least') : '-'];
        }));
    }
  } finally {
    for (const r of rated) await r.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
