// Workload drivers for the md benchmark: N workers keeping a fixed number of writes in flight
// against any BlockDevice (an MdArray here), fresh sparse member files, and a plain file copy
// that serves as the resync baseline. Offsets come from a seeded source so every configuration
// sees the same requests.

import { closeSync, ftruncateSync, openSync, readSync, writeSync } from 'node:fs';
import type { BlockDevice } from '../src/block/block-device.js';
import { seededRandom } from '../src/block/fault-device.js';
import { ratio, verdict } from './table.js';

export interface RunResult {
  seconds: number;
  bytes: number;
  ops: number;
}

export function mibPerSecond(r: RunResult): number {
  return r.bytes / (1 << 20) / r.seconds;
}

/** Runs `ops` requests with `depth` in flight; `request(i)` issues the i-th. */
export async function runQueue(ops: number, depth: number, request: (i: number) => Promise<void>): Promise<number> {
  let next = 0;
  const start = performance.now();
  const worker = async (): Promise<void> => {
    while (next < ops) {
      const i = next++;
      await request(i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(depth, ops) }, worker));
  return (performance.now() - start) / 1000;
}

/** `ops` random block-aligned writes of `size` bytes over [from, from+span), same seed → same offsets. */
export function randomOffsets(ops: number, size: number, span: number, seed: number, from = 0): number[] {
  const rnd = seededRandom(seed);
  const slots = Math.floor(span / size);
  return Array.from({ length: ops }, () => from + Math.floor(rnd() * slots) * size);
}

export async function randomWrites(dev: BlockDevice, offsets: number[], size: number, depth: number): Promise<RunResult> {
  const data = Buffer.alloc(size, 0x5a);
  const seconds = await runQueue(offsets.length, depth, (i) => dev.write(offsets[i] as number, data));
  return { seconds, bytes: offsets.length * size, ops: offsets.length };
}

/**
 * randomWrites as the NBD server makes them: writeNow (done on this thread, BlockDevice.writeNow)
 * where the device takes it, else write(). An array's write() also ends on this thread when it
 * waited for the bitmap, but one that waited for nothing goes through the thread pool: compared
 * through write() alone, a bitmap's first writes would look cheaper than no bitmap's.
 */
export async function randomWritesNow(dev: BlockDevice, offsets: number[], size: number, depth: number): Promise<RunResult> {
  const data = Buffer.alloc(size, 0x5a);
  const parts = [data];
  const seconds = await runQueue(offsets.length, depth, async (i) => {
    if (dev.writeNow?.(offsets[i] as number, parts) !== true) await dev.write(offsets[i] as number, data);
  });
  return { seconds, bytes: offsets.length * size, ops: offsets.length };
}

export async function sequentialWrites(dev: BlockDevice, from: number, total: number, size: number, depth: number): Promise<RunResult> {
  const data = Buffer.alloc(size, 0xa5);
  const ops = Math.floor(total / size);
  const seconds = await runQueue(ops, depth, (i) => dev.write(from + i * size, data));
  return { seconds, bytes: ops * size, ops };
}

/** Empties and re-extends a member file: sparse, no superblock, its tmpfs pages given back. */
export function freshFile(path: string, size: number): void {
  const fd = openSync(path, 'w');
  try {
    ftruncateSync(fd, size);
  } finally {
    closeSync(fd);
  }
}

/** The resync baseline: a plain sequential copy of [offset, offset+length) from one file to another. */
export function copyRange(from: string, to: string, offset: number, length: number, block = 1 << 20): RunResult {
  const src = openSync(from, 'r');
  const dst = openSync(to, 'r+');
  const buf = Buffer.alloc(block);
  const start = performance.now();
  try {
    for (let pos = 0; pos < length; pos += block) {
      const n = Math.min(block, length - pos);
      readSync(src, buf, 0, n, offset + pos);
      writeSync(dst, buf, 0, n, offset + pos);
    }
  } finally {
    closeSync(src);
    closeSync(dst);
  }
  return { seconds: (performance.now() - start) / 1000, bytes: length, ops: Math.ceil(length / block) };
}

/** What one contender did over all its slices of an interleaved run. */
export interface Totals extends RunResult {
  /** CPU time of this process (user + system) during the contender's own slices. */
  cpuSeconds: number;
}

/**
 * Runs the contenders' workloads in `slices` turns each, slice i of every contender before slice
 * i+1 of any, rotating who goes first. On a shared machine whose speed drifts by tens of percent
 * within seconds, separate whole runs measure the drift as much as the code; interleaved slices
 * put the drift on every contender alike. Each slice runs alone, so the CPU time measured across
 * it is its contender's (plus any timer of another contender that fires meanwhile, which is small).
 */
export async function interleave<K extends string>(
  kinds: readonly K[], slices: number, run: (kind: K, slice: number) => Promise<RunResult>,
): Promise<Record<K, Totals>> {
  const totals = Object.fromEntries(kinds.map((k) => [k, { seconds: 0, bytes: 0, ops: 0, cpuSeconds: 0 }])) as Record<K, Totals>;
  for (let slice = 0; slice < slices; slice++) {
    for (let i = 0; i < kinds.length; i++) {
      const kind = kinds[(i + slice) % kinds.length]!;
      const cpu = process.cpuUsage();
      const r = await run(kind, slice);
      const used = process.cpuUsage(cpu);
      const t = totals[kind];
      t.seconds += r.seconds;
      t.bytes += r.bytes;
      t.ops += r.ops;
      t.cpuSeconds += (used.user + used.system) / 1e6;
    }
  }
  return totals;
}

/** Index of the median value (the lower middle one for an even count). */
function middleIndex(values: readonly number[]): number {
  return [...values.keys()].sort((a, b) => values[a]! - values[b]!)[Math.floor((values.length - 1) / 2)]!;
}

export function totalsMiBs(t: Totals): number {
  return t.bytes / (1 << 20) / t.seconds;
}

export function totalsCpuMicrosPerOp(t: Totals): number {
  return (t.cpuSeconds / t.ops) * 1e6;
}

export interface MedianRuns<K extends string> {
  /** The run whose subject/baseline throughput ratio is the median. */
  run: Record<K, Totals>;
  /** That ratio for every run, in order. */
  ratios: number[];
}

/**
 * The cells of a bitmap-overhead row, after the row's labels: `subject` and `baseline` in MiB/s,
 * their ratio with its verdict against `target` (at least), each run's ratio, CPU µs per write
 * of both and their ratio, then `third` in MiB/s and against `baseline`.
 */
export function overheadCells<K extends string>(m: MedianRuns<K>, subject: K, baseline: K, third: K, target: number): (string | number)[] {
  const rate = (k: K): number => totalsMiBs(m.run[k]);
  const cpu = (k: K): number => totalsCpuMicrosPerOp(m.run[k]);
  const s = rate(subject);
  const b = rate(baseline);
  return [
    b, s, ratio(s, b), verdict(s / b, target, 'least'), m.ratios.map((r) => r.toFixed(3)).join(' '),
    cpu(baseline), cpu(subject), ratio(cpu(baseline), cpu(subject)),
    rate(third), ratio(rate(third), b),
  ];
}

/**
 * `repeats` interleaved runs (interleave) of the contenders, each on fresh devices that `open`
 * makes and `close` stops afterwards; one interleaved run still moves by ±5% on this machine.
 */
export async function medianOfInterleaved<K extends string, D>(options: {
  kinds: readonly K[];
  repeats: number;
  slices: number;
  subject: K;
  baseline: K;
  open: (kind: K) => Promise<D>;
  run: (device: D, slice: number) => Promise<RunResult>;
  close: (device: D, kind: K) => Promise<void>;
}): Promise<MedianRuns<K>> {
  const runs: Record<K, Totals>[] = [];
  for (let rep = 0; rep < options.repeats; rep++) {
    const devices = {} as Record<K, D>;
    for (const kind of options.kinds) devices[kind] = await options.open(kind);
    runs.push(await interleave(options.kinds, options.slices, (kind, i) => options.run(devices[kind], i)));
    for (const kind of options.kinds) await options.close(devices[kind], kind);
  }
  const ratios = runs.map((t) => totalsMiBs(t[options.subject]) / totalsMiBs(t[options.baseline]));
  return { run: runs[middleIndex(ratios)]!, ratios };
}
