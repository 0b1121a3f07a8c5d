// Benchmark of llbitmap's write path on real files (`npm run bench:llbitmap`): many writers doing
// startWrite + unplug + endWrite on random 4 KiB ranges, so every write dirties a bitmap block.
// Baseline, measured in the same run on the same files: one durable (FUA) 512-byte write to every
// member per write — what an unplug costs without coalescing. Reports ops/s, durable bitmap I/Os
// per write, and the ratio llbitmap / baseline at 1, 8 and 64 writers.
// Environment: LLRAID_BENCH_DIR (default <tmpdir>/llraid-bench-llbitmap; use a real disk, FUA on
// tmpfs costs nothing), BENCH_LLBITMAP_OPS (writes per round, 1000), BENCH_LLBITMAP_ROUNDS (3),
// BENCH_LLBITMAP_WRITERS (concurrency levels, "1,8,64").

import { mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileDevice } from '../src/block/file-device.js';
import type { BlockDevice, WriteOptions } from '../src/block/block-device.js';
import type { BitmapHost, BitmapMember } from '../src/md/write-intent-bitmap.js';
import { LlBitmap } from '../src/md/llbitmap/index.js';
import { median, printTable, ratio } from './table.js';

const KIB = 1024;
const MIB = 1024 * KIB;
const GIB = 1024 * MIB;
const DIR = process.env.LLRAID_BENCH_DIR ?? join(tmpdir(), 'llraid-bench-llbitmap');
const OPS = Number(process.env.BENCH_LLBITMAP_OPS ?? 1000);
const ROUNDS = Number(process.env.BENCH_LLBITMAP_ROUNDS ?? 3);
const CONCURRENCY = (process.env.BENCH_LLBITMAP_WRITERS ?? '1,8,64').split(',').map(Number);
const SYNC_SIZE = 16 * GIB;
const BITMAP_OFFSET = 8 * KIB;
const SPACE = 1016 * KIB;

/** Counts the durability points (FUA writes and cache flushes) a member is asked for. */
class Counting {
  durable = 0;
  constructor(readonly device: BlockDevice) {}
  wrap(): BlockDevice {
    const d = this.device;
    return {
      size: d.size,
      blockSize: d.blockSize,
      readOnly: d.readOnly,
      read: (o, l) => d.read(o, l),
      write: (o, data, opts?: WriteOptions) => {
        if (opts?.fua) this.durable++;
        return d.write(o, data, opts);
      },
      flush: () => {
        this.durable++;
        return d.flush();
      },
      discard: (o, l) => d.discard(o, l),
      writeZeroes: (o, l, opts) => d.writeZeroes(o, l, opts),
      close: () => d.close(),
    };
  }
}

function host(members: BitmapMember[]): BitmapHost {
  return {
    uuid: new Uint8Array(16).fill(0x42),
    parity: false,
    events: () => 1n,
    isDegraded: () => false,
    bitmapMembers: () => members,
    requestSync: () => undefined,
    failMember: (m, err) => {
      throw new Error(`bench: member ${m.name} failed: ${err.message}`);
    },
  };
}

function randomOffsets(n: number, seed: number): number[] {
  let x = seed;
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    out.push(Math.floor((x / 2 ** 31) * (SYNC_SIZE / (4 * KIB))) * 4 * KIB);
  }
  return out;
}

/** Runs `n` jobs with `concurrency` workers; returns seconds. */
async function pool(n: number, concurrency: number, job: (i: number) => Promise<void>): Promise<number> {
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < n) await job(next++);
    }),
  );
  return (performance.now() - t0) / 1000;
}

async function main(): Promise<void> {
  rmSync(DIR, { recursive: true, force: true });
  mkdirSync(DIR, { recursive: true });
  const rows: (string | number)[][] = [];
  const files = await Promise.all([0, 1].map((i) => FileDevice.open(join(DIR, `m${i}.img`), { create: { size: 2 * MIB } })));
  const counters = files.map((f) => new Counting(f));
  const members = counters.map((c, i) => ({ name: `m${i}`, device: c.wrap(), bitmapOffset: BITMAP_OFFSET }));
  for (const concurrency of CONCURRENCY) {
    const ll: number[] = [];
    const raw: number[] = [];
    let perOp = 0;
    // Interleaved rounds, medians: the machine is shared and fsync times vary a lot.
    for (let round = 0; round < ROUNDS; round++) {
      const bm = await LlBitmap.create(host(members), { ioSize: 512, syncSize: SYNC_SIZE, spaceBytes: SPACE });
      for (const c of counters) c.durable = 0;
      const offsets = randomOffsets(OPS, 7 + round * 100 + concurrency);
      const llSeconds = await pool(OPS, concurrency, async (i) => {
        const off = offsets[i]!;
        await bm.startWrite(off, 4 * KIB);
        await bm.unplug();
        bm.endWrite(off, 4 * KIB);
      });
      perOp = counters[0]!.durable / OPS;
      await bm.close();
      ll.push(OPS / llSeconds);

      // Baseline: every write pays its own durable bitmap block write on every member.
      const block = Buffer.alloc(512, 2);
      const rawSeconds = await pool(OPS, concurrency, async (i) => {
        const at = BITMAP_OFFSET + 1024 + (Math.floor(offsets[i]! / (64 * KIB) / 512) * 512) % (SPACE - 1536);
        await Promise.all(files.map((f) => f.write(at, block, { fua: true })));
      });
      raw.push(OPS / rawSeconds);
    }
    const l = median(ll);
    const r = median(raw);
    rows.push([`${concurrency} writers`, Math.round(l), perOp, Math.round(r), 1, ratio(l, r)]);
  }
  for (const f of files) await f.close();
  printTable(
    `llbitmap write path: ${OPS} random 4 KiB writes, 2 members on ${DIR}, median of ${ROUNDS} rounds`,
    ['', 'llbitmap ops/s', 'durable I/O per write', 'baseline ops/s', 'durable I/O per write', 'llbitmap / baseline'],
    rows,
  );
  rmSync(DIR, { recursive: true, force: true });
}

await main();
