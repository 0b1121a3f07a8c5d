// Benchmark of llraid's NBD client (src/nbd/client) against libnbd's, on the same export:
// nbdkit's file plugin over a tmpfs file, reached over a unix socket. Sequential 1 MiB reads and
// writes of the whole export (QD16) against nbdcopy (one connection, the same request size and
// queue depth; nbdcopy's own default of four connections in an extra row), and 4 KiB random reads
// and writes at QD32 for a few seconds against fio's nbd engine (libnbd). Every tool runs every
// workload once per round, in an order that rotates, and the median of the rounds is reported
// (a shared 2-core machine moves ±15% from run to run). Issue 13 asks llraid's client ≥ 0.8x.
// Run: npm run bench:nbd-client (env BENCH_SECONDS, BENCH_SIZE_MIB, BENCH_ROUNDS).

import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, openSync, rmSync, writeSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { NbdClientDevice } from '../src/nbd/index.js';
import { median, printTable, ratio, verdict } from './table.js';

const run = promisify(execFile);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const SIZE_MIB = Number(process.env.BENCH_SIZE_MIB ?? 1024);
const SIZE = SIZE_MIB * 1024 * 1024;
const MiB = 1024 * 1024;
const SEQ_QD = 16;
const RAND_QD = 32;
const TOOL_ENV = { ...process.env, PATH: `/usr/bin:/bin:${process.env.PATH ?? ''}`, LIBNBD_DEBUG: '0' };

interface Workload {
  name: string;
  unit: 'MiB/s' | 'IOPS';
  /** The reference tool's name for the table. */
  reference: string;
  llraid(uri: string, source: string): Promise<number>;
  libnbd(uri: string, source: string): Promise<number>;
}

/** MiB/s of a whole-export copy that took `ms`. */
const mibps = (ms: number): number => SIZE / MiB / (ms / 1000);

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

async function withDevice<T>(uri: string, fn: (dev: NbdClientDevice) => Promise<T>): Promise<T> {
  const dev = await NbdClientDevice.connect({ uri });
  try {
    return await fn(dev);
  } finally {
    await dev.close();
  }
}

/** `qd` workers each taking the next 1 MiB of the export until it is all done. */
async function sequential(dev: NbdClientDevice, qd: number, op: (offset: number, buf: Buffer) => Promise<void>): Promise<number> {
  let next = 0;
  const buffers = Array.from({ length: qd }, () => Buffer.alloc(MiB, 0x5a));
  return timed(() => Promise.all(buffers.map(async (buf) => {
    for (let at = next; at < SIZE; at = next) {
      next += MiB;
      await op(at, buf);
    }
  })));
}

/** IOPS of `qd` workers doing 4 KiB `op`s at random aligned offsets for SECONDS. */
async function random4k(dev: NbdClientDevice, op: (offset: number, buf: Buffer) => Promise<void>): Promise<number> {
  const blocks = SIZE / 4096;
  let count = 0;
  const end = performance.now() + SECONDS * 1000;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: RAND_QD }, async () => {
    const buf = Buffer.alloc(4096, 0xa5);
    while (performance.now() < end) {
      await op(Math.floor(Math.random() * blocks) * 4096, buf);
      count++;
    }
  }));
  return count / ((performance.now() - t0) / 1000);
}

async function nbdcopy(args: string[]): Promise<number> {
  return mibps(await timed(() => run('nbdcopy', ['--no-extents', `--request-size=${MiB}`, `--requests=${SEQ_QD}`, ...args], { env: TOOL_ENV })));
}

async function fio(uri: string, rw: string): Promise<number> {
  const { stdout } = await run('fio', [
    '--name=bench', '--ioengine=nbd', `--uri=${uri}`, `--rw=${rw}`, '--bs=4k', `--iodepth=${RAND_QD}`,
    `--size=${SIZE_MIB}M`, '--time_based', `--runtime=${SECONDS}`, '--output-format=json',
  ], { env: TOOL_ENV, maxBuffer: 16 * MiB });
  const job = (JSON.parse(stdout.slice(stdout.indexOf('{'))) as { jobs: Array<Record<'read' | 'write', { iops: number }>> }).jobs[0]!;
  return rw.includes('write') ? job.write.iops : job.read.iops;
}

const WORKLOADS: Workload[] = [
  {
    name: `1M seq read QD${SEQ_QD}`,
    unit: 'MiB/s',
    reference: 'nbdcopy -C 1',
    llraid: (uri) => withDevice(uri, async (dev) => mibps(await sequential(dev, SEQ_QD, (at, buf) => dev.readInto(at, buf)))),
    libnbd: (uri) => nbdcopy(['--connections=1', uri, 'null:']),
  },
  {
    name: `1M seq write QD${SEQ_QD}`,
    unit: 'MiB/s',
    reference: 'nbdcopy -C 1',
    llraid: (uri) => withDevice(uri, async (dev) => mibps(await sequential(dev, SEQ_QD, (at, buf) => dev.write(at, buf)))),
    libnbd: (uri, source) => nbdcopy(['--connections=1', source, uri]),
  },
  {
    name: `4k randread QD${RAND_QD}`,
    unit: 'IOPS',
    reference: 'fio nbd (libnbd)',
    llraid: (uri) => withDevice(uri, (dev) => random4k(dev, (at, buf) => dev.readInto(at, buf))),
    libnbd: (uri) => fio(uri, 'randread'),
  },
  {
    name: `4k randwrite QD${RAND_QD}`,
    unit: 'IOPS',
    reference: 'fio nbd (libnbd)',
    llraid: (uri) => withDevice(uri, (dev) => random4k(dev, (at, buf) => dev.write(at, buf))),
    libnbd: (uri) => fio(uri, 'randwrite'),
  },
];

async function main(): Promise<void> {
  const dir = mkdtempSync('/dev/shm/llraid-bench-nbd-client-');
  const file = join(dir, 'export.img');
  const source = join(dir, 'source.img');
  const socket = join(dir, 'nbd.sock');
  // Both files written through (no holes: nbdcopy would skip them, nbdkit would answer them free).
  for (const f of [file, source]) {
    const fd = openSync(f, 'w');
    const chunk = Buffer.alloc(MiB);
    for (let at = 0; at < SIZE; at += MiB) {
      chunk.fill((at / MiB) % 251 + 1);
      writeSync(fd, chunk);
    }
    closeSync(fd);
  }
  const server = spawn('nbdkit', ['--foreground', '--exit-with-parent', '--unix', socket, 'file', `file=${file}`], { env: TOOL_ENV, stdio: 'ignore' });
  try {
    for (let i = 0; !existsSync(socket); i++) {
      if (i > 200) throw new Error('nbdkit did not start within 10 s');
      await new Promise((r) => setTimeout(r, 50));
    }
    const uri = `nbd+unix:///?socket=${socket}`;
    const got = WORKLOADS.map(() => ({ llraid: [] as number[], libnbd: [] as number[] }));
    const multi: number[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      process.stderr.write(`bench: round ${round + 1}/${ROUNDS}\n`);
      for (const [i, w] of WORKLOADS.entries()) {
        const order = (round + i) % 2 === 0 ? (['llraid', 'libnbd'] as const) : (['libnbd', 'llraid'] as const);
        for (const who of order) got[i]![who].push(await w[who](uri, source));
      }
      multi.push(await nbdcopy([uri, 'null:']));
    }
    printTable(
      `NBD client benchmark: nbdkit file on tmpfs over a unix socket, ${SIZE_MIB} MiB export, ${SECONDS} s random runs, median of ${ROUNDS} rounds`,
      ['workload', 'unit', 'llraid client', 'reference', 'reference tool', 'llraid/reference', 'target', 'per round'],
      WORKLOADS.map((w, i) => {
        const a = median(got[i]!.llraid);
        const b = median(got[i]!.libnbd);
        const perRound = got[i]!.llraid.map((v, k) => (v / got[i]!.libnbd[k]!).toFixed(2)).join(' ');
        return [w.name, w.unit, a, b, w.reference, ratio(a, b), verdict(a / b, 0.8, 'least'), perRound];
      }),
    );
    console.log(`nbdcopy with its default connections (multi-conn) reading the export: ${median(multi).toFixed(0)} MiB/s`);
  } finally {
    server.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
