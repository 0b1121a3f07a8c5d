// What it costs to hand one 4 KiB request to another thread and take its answer back, on this
// machine: the first step of an engine using more than one core (docs/architecture.md, "More
// than one core"). Each row reads random 4 KiB blocks of a tmpfs file, QD32, and reports requests
// per second and the CPU of the whole process (all threads, process.cpuUsage) per request:
//   inline       pread on the event loop thread (what `llraid serve --file` does for 4 KiB)
//   libuv pool   fs.read, the pool's thread does the pread (LLRAID_INLINE_IO=0)
//   postMessage  a worker_threads worker does the pread; requests and answers as messages
//   SAB ring     the same worker, requests and answers in a SharedArrayBuffer ring, woken with
//                Atomics.notify, the worker waiting in Atomics.wait, the event loop in Atomics.waitAsync
// Rounds rotate the rows; medians are reported. Run: node --import tsx bench/thread-handoff.ts
// (env BENCH_HANDOFF_OPS, default 200000 per row and round; BENCH_HANDOFF_ROUNDS, default 3).

import { closeSync, openSync, read, readSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { Worker } from 'node:worker_threads';
import { median, printTable, ratio } from './table.js';

const OPS = Number(process.env.BENCH_HANDOFF_OPS ?? 200_000);
const ROUNDS = Number(process.env.BENCH_HANDOFF_ROUNDS ?? 3);
const QD = 32;
const BLOCK = 4096;
const FILE_BLOCKS = 16384; // 64 MiB
const FILE = `/dev/shm/llraid-bench-handoff-${process.pid}.img`;

interface Row { ops: number; cpuUs: number }

/** Runs `issue` QD deep until OPS requests completed; `issue(done)` starts one request. */
async function drive(issue: (done: () => void) => void): Promise<Row> {
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let started = 0;
  let completed = 0;
  await new Promise<void>((resolve) => {
    const done = (): void => {
      completed++;
      if (completed === OPS) resolve();
      else if (started < OPS) {
        started++;
        issue(done);
      }
    };
    for (; started < QD; started++) issue(done);
  });
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  return { ops: OPS / seconds, cpuUs: (cpu.user + cpu.system) / OPS };
}

const randomBlock = (): number => Math.floor(Math.random() * FILE_BLOCKS) * BLOCK;

async function inline(fd: number): Promise<Row> {
  const buf = Buffer.allocUnsafe(BLOCK);
  // Answered on the next microtask, as the NBD connection answers an inline read.
  return drive((done) => {
    readSync(fd, buf, 0, BLOCK, randomBlock());
    queueMicrotask(done);
  });
}

async function pool(fd: number): Promise<Row> {
  const bufs = Array.from({ length: QD }, () => Buffer.allocUnsafe(BLOCK));
  let k = 0;
  return drive((done) => read(fd, bufs[k++ % QD]!, 0, BLOCK, randomBlock(), () => done()));
}

const WORKER_MESSAGES = `
const { parentPort, workerData } = require('node:worker_threads');
const { readSync } = require('node:fs');
const data = new Uint8Array(workerData.sab);
parentPort.on('message', (m) => {
  readSync(workerData.fd, data, m.slot * ${BLOCK}, ${BLOCK}, m.offset);
  parentPort.postMessage(m.slot);
});`;

async function messages(fd: number): Promise<Row> {
  const sab = new SharedArrayBuffer(QD * BLOCK);
  const worker = new Worker(WORKER_MESSAGES, { eval: true, workerData: { fd, sab } });
  const waiting = new Map<number, () => void>();
  const free = Array.from({ length: QD }, (_, i) => i);
  worker.on('message', (slot: number) => {
    const done = waiting.get(slot)!;
    waiting.delete(slot);
    free.push(slot);
    done();
  });
  try {
    return await drive((done) => {
      const slot = free.pop()!;
      waiting.set(slot, done);
      worker.postMessage({ slot, offset: randomBlock() });
    });
  } finally {
    await worker.terminate();
  }
}

// The ring: ctl[0] requests posted (main writes), ctl[1] requests taken (worker), ctl[2] answers
// posted (worker), ctl[3] answers taken (main); req[i % QD] the offset of request i (in blocks),
// ans[i % QD] the slot it answered. Counters only grow; each side waits on the other's counter.
const WORKER_RING = `
const { workerData } = require('node:worker_threads');
const { readSync } = require('node:fs');
const ctl = new Int32Array(workerData.ctl);
const req = new Int32Array(workerData.req);
const ans = new Int32Array(workerData.ans);
const data = new Uint8Array(workerData.sab);
for (;;) {
  const taken = Atomics.load(ctl, 1);
  if (Atomics.load(ctl, 0) === taken) { Atomics.wait(ctl, 0, taken); continue; }
  if (taken < 0) break;
  const posted = Atomics.load(ctl, 0);
  for (let i = taken; i < posted; i++) {
    const slot = i % ${QD};
    readSync(workerData.fd, data, slot * ${BLOCK}, ${BLOCK}, req[slot] * ${BLOCK});
    ans[Atomics.load(ctl, 2) % ${QD}] = slot;
    Atomics.add(ctl, 2, 1);
  }
  Atomics.store(ctl, 1, posted);
  Atomics.notify(ctl, 2);
}`;

// Atomics.waitAsync is in V8 (and Node 16+), not in the TypeScript lib this project targets.
type WaitAsync = (a: Int32Array, index: number, value: number) => { async: false; value: string } | { async: true; value: Promise<string> };
const waitAsync = (Atomics as unknown as { waitAsync: WaitAsync }).waitAsync;

async function ring(fd: number): Promise<Row> {
  const ctl = new Int32Array(new SharedArrayBuffer(16));
  const req = new Int32Array(new SharedArrayBuffer(QD * 4));
  const ans = new Int32Array(new SharedArrayBuffer(QD * 4));
  const worker = new Worker(WORKER_RING, { eval: true, workerData: { fd, ctl: ctl.buffer, req: req.buffer, ans: ans.buffer, sab: new SharedArrayBuffer(QD * BLOCK) } });
  const waiting: Array<() => void> = [];
  let reaping = false;
  // Reaps answers until none is outstanding; one waitAsync at a time.
  const reap = async (): Promise<void> => {
    reaping = true;
    while (waiting.length > 0) {
      const seen = Atomics.load(ctl, 2);
      const taken = Atomics.load(ctl, 3);
      if (seen === taken) {
        const w = waitAsync(ctl, 2, seen);
        if (w.async) await w.value;
        continue;
      }
      Atomics.store(ctl, 3, seen);
      // Answers come in request order here (one worker); each answer completes the oldest.
      for (let i = taken; i < seen; i++) waiting.shift()!();
    }
    reaping = false;
  };
  let posted = 0;
  let flush = false;
  try {
    return await drive((done) => {
      waiting.push(done);
      req[posted % QD] = randomBlock() / BLOCK;
      posted++;
      // One store and one notify per batch of requests started in the same turn.
      if (!flush) {
        flush = true;
        queueMicrotask(() => {
          flush = false;
          Atomics.store(ctl, 0, posted);
          Atomics.notify(ctl, 0);
          if (!reaping) void reap();
        });
      }
    });
  } finally {
    Atomics.store(ctl, 1, -1);
    Atomics.add(ctl, 0, 1);
    Atomics.notify(ctl, 0);
    await worker.terminate();
  }
}

async function main(): Promise<void> {
  writeFileSync(FILE, Buffer.alloc(FILE_BLOCKS * BLOCK, 1));
  const fd = openSync(FILE, 'r');
  const rows: Array<[string, (fd: number) => Promise<Row>]> = [['inline', inline], ['libuv pool', pool], ['postMessage', messages], ['SAB ring', ring]];
  const got = new Map(rows.map(([n]) => [n, [] as Row[]]));
  const before = loadavg().map((l) => l.toFixed(2)).join(' ');
  try {
    for (let round = 0; round < ROUNDS; round++) {
      for (let k = 0; k < rows.length; k++) {
        const [name, run] = rows[(k + round) % rows.length]!;
        got.get(name)!.push(await run(fd));
      }
    }
  } finally {
    closeSync(fd);
    rmSync(FILE, { force: true });
  }
  const cpu = (n: string): number => median(got.get(n)!.map((r) => r.cpuUs));
  printTable(`thread hand-off of a 4 KiB read, QD${QD}, ${OPS} requests per row and round, median of ${ROUNDS}; load average ${before}`,
    ['path', 'requests/s', 'CPU µs/request', 'CPU / inline'],
    rows.map(([n]) => [n, median(got.get(n)!.map((r) => r.ops)), cpu(n), ratio(cpu(n), cpu('inline'))]));
}

await main();
