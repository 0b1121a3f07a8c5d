// Benchmark of the NBD server: `llraid serve` against `nbdkit file` and `qemu-nbd` on the same
// tmpfs file, all driven by the same client (fio ioengine=nbd, one connection per job). Prints a
// table with each server's result and llraid's ratio to nbdkit, the servers' peak RSS, and `llraid serve` of a
// raid1 (llbitmap) over two files on the same tmpfs as a ratio to the single file. Every server
// runs every workload once per round, the servers' order rotating from round to round, and the
// median of the rounds is reported: on a shared 2-core machine one run of a few seconds moves by
// ±15%, which is more than the margins the targets ask about.
// Run: npm run bench:nbd (needs `npm run build`; env BENCH_SECONDS, BENCH_SIZE_MIB, BENCH_NBD_ROUNDS).

import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { median, printTable, ratio, verdict } from './table.js';
import { rssKiB } from './proc.js';

const run = promisify(execFile);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const ROUNDS = Number(process.env.BENCH_NBD_ROUNDS ?? 3);
const SIZE_MIB = Number(process.env.BENCH_SIZE_MIB ?? 1024);
const ROOT = new URL('..', import.meta.url).pathname;

interface Workload {
  name: string;
  rw: string;
  bs: string;
  iodepth: number;
  /** Which number of fio's JSON output to report. */
  metric: 'iops' | 'MiB/s';
  /** Target ratio to nbdkit (from issue 4). */
  target: number;
}

const WORKLOADS: Workload[] = [
  { name: '4k randread QD32', rw: 'randread', bs: '4k', iodepth: 32, metric: 'iops', target: 0.8 },
  { name: '4k randwrite QD32', rw: 'randwrite', bs: '4k', iodepth: 32, metric: 'iops', target: 0.8 },
  { name: '1M seq read QD8', rw: 'read', bs: '1M', iodepth: 8, metric: 'MiB/s', target: 1.0 },
  { name: '1M seq write QD8', rw: 'write', bs: '1M', iodepth: 8, metric: 'MiB/s', target: 1.0 },
];

interface Server {
  name: string;
  start(file: string, socket: string): ChildProcess;
}

function cliPath(): string {
  const cli = join(ROOT, 'dist/src/cli/bin.cjs');
  if (!existsSync(cli)) throw new Error(`expected the built CLI at ${cli}: run npm run build first`);
  return cli;
}

/** The members of the raid1 row: two files beside the single one (made by `llraid create`). */
const raid1Members = (file: string): string[] => [`${file}.r1-a`, `${file}.r1-b`];

const SERVERS: Server[] = [
  {
    name: 'llraid serve',
    start: (file, socket) => spawn(process.execPath, [cliPath(), 'serve', '--file', file, '--socket', socket, '--quiet'], { stdio: ['ignore', 'pipe', 'inherit'] }),
  },
  {
    name: 'llraid raid1',
    start: (file, socket) => spawn(process.execPath, [cliPath(), 'serve', '--socket', socket, '--quiet', ...raid1Members(file)], { stdio: ['ignore', 'pipe', 'inherit'] }),
  },
  {
    name: 'nbdkit file',
    start: (file, socket) => spawn('nbdkit', ['--foreground', '--exit-with-parent', '--unix', socket, 'file', `file=${file}`], { stdio: ['ignore', 'pipe', 'inherit'] }),
  },
  {
    name: 'qemu-nbd',
    start: (file, socket) => spawn('qemu-nbd', ['--persistent', '--shared=8', '--format=raw', '--cache=writeback', '--aio=threads', `--socket=${socket}`, file], { stdio: ['ignore', 'pipe', 'inherit'] }),
  },
];

async function waitForSocket(path: string, child: ChildProcess): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (existsSync(path)) return;
    if (child.exitCode !== null) throw new Error(`server exited with ${child.exitCode} before listening`);
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`server did not create ${path} within 10 s`);
}


async function fio(uri: string, w: Workload): Promise<number> {
  const { stdout } = await run('fio', [
    '--name=bench', '--ioengine=nbd', `--uri=${uri}`, `--rw=${w.rw}`, `--bs=${w.bs}`, `--iodepth=${w.iodepth}`,
    `--size=${SIZE_MIB}M`, '--time_based', `--runtime=${SECONDS}`, '--ramp_time=1', '--output-format=json',
  ], { maxBuffer: 16 * 1024 * 1024 });
  // The nbd engine prints a line before the JSON document.
  const job = (JSON.parse(stdout.slice(stdout.indexOf('{'))) as { jobs: Array<Record<'read' | 'write', { iops: number; bw_bytes: number }>> }).jobs[0]!;
  const side = w.rw.includes('write') ? job.write : job.read;
  return w.metric === 'iops' ? side.iops : side.bw_bytes / 1048576;
}

/** Runs every workload against one server; returns results and the peak RSS seen. */
async function measure(server: Server, file: string, dir: string): Promise<{ results: number[]; rss: number }> {
  const socket = join(dir, `${server.name.replace(/\W+/g, '-')}.sock`);
  const child = server.start(file, socket);
  let peak = 0;
  const sampler = setInterval(() => (peak = Math.max(peak, rssKiB(child.pid!))), 200);
  try {
    await waitForSocket(socket, child);
    const uri = `nbd+unix:///?socket=${socket}`;
    const results: number[] = [];
    for (const w of WORKLOADS) results.push(await fio(uri, w));
    return { results, rss: peak };
  } finally {
    clearInterval(sampler);
    child.kill('SIGTERM');
    await new Promise((r) => (child.exitCode !== null ? r(undefined) : child.once('exit', r)));
    rmSync(socket, { force: true });
  }
}

async function main(): Promise<void> {
  const dir = mkdtempSync('/dev/shm/llraid-bench-nbd-');
  const file = join(dir, 'disk.img');
  try {
    writeFileSync(file, Buffer.alloc(0));
    await run('fallocate', ['-l', `${SIZE_MIB}M`, file]);
    // raid1 with llbitmap over two files on the same tmpfs: the cost of mirroring and the bitmap.
    await run(process.execPath, [cliPath(), 'create', '--level', '1', '--name', 'bench-r1', '--size', `${SIZE_MIB}M`, ...raid1Members(file)]);
    const got = new Map(SERVERS.map((s) => [s.name, { runs: WORKLOADS.map((): number[] => []), rss: 0 }]));
    for (let round = 0; round < ROUNDS; round++) {
      for (let k = 0; k < SERVERS.length; k++) {
        const s = SERVERS[(k + round) % SERVERS.length]!;
        process.stderr.write(`bench: round ${round + 1}/${ROUNDS}: ${s.name} ...\n`);
        const { results, rss } = await measure(s, file, dir);
        const entry = got.get(s.name)!;
        results.forEach((v, i) => entry.runs[i]!.push(v));
        entry.rss = Math.max(entry.rss, rss);
      }
    }
    const med = (server: string, i: number): number => median(got.get(server)!.runs[i]!);
    const names = SERVERS.map((s) => s.name);
    printTable(
      `NBD server benchmark: fio ioengine=nbd, ${SECONDS} s per workload, ${SIZE_MIB} MiB tmpfs file, median of ${ROUNDS} rounds (IOPS or MiB/s)`,
      ['workload', 'unit', ...names, 'llraid/nbdkit', 'target', 'llraid/nbdkit per round'],
      WORKLOADS.map((w, i) => {
        const r = med('llraid serve', i) / med('nbdkit file', i);
        const perRound = got.get('llraid serve')!.runs[i]!.map((v, k) => (v / got.get('nbdkit file')!.runs[i]![k]!).toFixed(2)).join(' ');
        return [w.name, w.metric, ...names.map((n) => med(n, i)), ratio(med('llraid serve', i), med('nbdkit file', i)), verdict(r, w.target, 'least'), perRound];
      }),
    );
    console.log(['peak RSS MiB', ...names.map((n) => `${n} ${(got.get(n)!.rss / 1024).toFixed(0)}`)].join('  '));
    printTable('llraid serve: raid1 (llbitmap, two files) against one file', ['workload', 'unit', 'one file', 'raid1', 'raid1/one file'],
      WORKLOADS.map((w, i) => [w.name, w.metric, med('llraid serve', i), med('llraid raid1', i), ratio(med('llraid raid1', i), med('llraid serve', i))]));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
