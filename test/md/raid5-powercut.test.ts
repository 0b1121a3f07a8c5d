// Power cuts in the middle of raid5/raid6 stripe writes (the write hole), as a property test:
// random non-overlapping writes (some FUA) and flushes over FaultDevice members that share one
// PowerDomain, a cut after a random number of member writes (so a stripe may hold new data and old
// parity), then reassembly from what the members hold and the bitmap-guided resync. Then:
//   (a) P and Q of every row a write touched match the data (recomputed here, independently);
//   (b) every write acknowledged with FUA, or acknowledged before an acknowledged flush was
//       issued, reads back;
//   (c) every sector any write touched, durable or not, holds that write's data or the zeroes it
//       replaced (the writes do not overlap), so a resync never makes up data from stale parity.
// 10 cases per level (2,500 each in long mode, test/support/long-mode.ts; LLRAID_PROPERTY_RUNS sets
// the count per level). The file prints its seed before the first case and the cases run per
// level; LLRAID_PROPERTY_SEED (and LLRAID_PROPERTY_PATH, from a failure report) replay a run
// (test/support/property-run.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { assembleArray, createArray } from '../../src/md/index.js';
import { FaultDevice, PowerDomain, type CutMode } from '../../src/block/fault-device.js';
import { MemoryDevice } from '../../src/block/memory-device.js';
import { ParityLayout } from '../../src/md/parity/layout.js';
import { inconsistentRows } from './raid5-fixture.js';
import { scaled } from '../support/long-mode.js';
import { PATH_ENV, propertySeed, runProperty } from '../support/property-run.js';

const SECTOR = 512;
const DATA_OFFSET = 1 << 20;
const MEMBER_DATA = 16 << 20;
const CHUNK = 64 * 1024;
const FILE = 'test/md/raid5-powercut.test.ts';
const RUNS_PER_LEVEL = scaled(10, 2_500, 'LLRAID_PROPERTY_RUNS');
const SEED = propertySeed(FILE);

type Op = { t: 'write'; sector: number; sectors: number; fua: boolean } | { t: 'flush' } | { t: 'wait' };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ t: fc.constant('write' as const), sector: fc.nat(1 << 20), sectors: fc.integer({ min: 1, max: 384 }), fua: fc.boolean() }) },
  { weight: 1, arbitrary: fc.constant({ t: 'flush' as const }) },
  { weight: 1, arbitrary: fc.constant({ t: 'wait' as const }) },
);

interface WriteRec {
  offset: number;
  data: Buffer;
  fua: boolean;
  issue: number;
  ack: number | null;
}

/** What one case checked, summed per level so a run shows it checked something. */
interface CaseStats {
  /** The workload's own member writes reached cutAfter (otherwise the cut came after it settled). */
  cutByWorkload: boolean;
  rowsChecked: number;
  writesChecked: number;
  durableWrites: number;
}

async function runCase(level: 5 | 6, ops: Op[], cutAfter: number, mode: CutMode, seed: number): Promise<CaseStats> {
  const n = level === 5 ? 4 : 5;
  const power = new PowerDomain({ seed, mode });
  const inner = Array.from({ length: n }, () => new MemoryDevice(DATA_OFFSET + MEMBER_DATA));
  const faulty = inner.map((d, i) => new FaultDevice(d, power, `m${i}`));
  const a = await createArray({
    name: 'cut', level, chunkSize: CHUNK, members: faulty.map((device, i) => ({ name: `m${i}`, device })),
    barrierIdle: 0, daemonSleep: 600,
  });
  const layout = new ParityLayout({ level, raidDisks: n, chunkSize: CHUNK });
  const sectors = a.size / SECTOR;
  let clock = 0;
  const writes: WriteRec[] = [];
  const flushes: { issue: number; ack: number | null }[] = [];
  const pending: Promise<unknown>[] = [];
  const taken: [number, number][] = [];
  power.cutAfterWrites(cutAfter);
  for (const op of ops) {
    if (power.isCut) break;
    if (op.t === 'write') {
      const first = op.sector % sectors;
      const count = Math.min(op.sectors, sectors - first);
      // Non-overlapping writes: each acknowledged write has exactly one expected content.
      if (taken.some(([s, e]) => first < e && s < first + count)) continue;
      taken.push([first, first + count]);
      const rec: WriteRec = { offset: first * SECTOR, data: Buffer.alloc(count * SECTOR, (writes.length % 250) + 1), fua: op.fua, issue: ++clock, ack: null };
      rec.data.writeUInt32LE(seed >>> 0, 0);
      writes.push(rec);
      pending.push(a.write(rec.offset, rec.data, { fua: rec.fua }).then(() => (rec.ack = ++clock), () => undefined));
    } else if (op.t === 'flush') {
      const rec = { issue: ++clock, ack: null as number | null };
      flushes.push(rec);
      pending.push(a.flush().then(() => (rec.ack = ++clock), () => undefined));
    } else {
      await Promise.allSettled(pending.splice(0));
    }
  }
  await Promise.allSettled(pending.splice(0));
  const cutByWorkload = power.isCut;
  // Always await: cut() is idempotent, and a cut the workload triggered may still be rewriting members.
  await power.cut();
  await a.abandon().catch(() => undefined);

  const { array: b } = await assembleArray({ members: inner.map((device, i) => ({ name: `m${i}`, device })) });
  try {
    const summary = await b.waitSync();
    if (summary !== undefined) assert.ok(summary.complete, `resync did not complete: ${JSON.stringify(summary)}`);
    // (a) parity of every row any write touched
    const rows = new Set<number>();
    for (const w of writes) {
      for (let r = Math.floor(w.offset / layout.rowBytes); r * layout.rowBytes < w.offset + w.data.length; r++) rows.add(r);
    }
    const areas = inner.map((d) => ({ read: (off: number, len: number) => d.read(DATA_OFFSET + off, len) }));
    assert.deepEqual(await inconsistentRows(areas, layout, [...rows].sort((x, y) => x - y)), [], 'rows with stale parity after resync');
    let durableWrites = 0;
    for (const w of writes) {
      const found = await b.read(w.offset, w.data.length);
      const durable = w.ack !== null && (w.fua || flushes.some((f) => f.ack !== null && f.issue > w.ack!));
      if (durable) {
        // (b) durable acknowledged writes
        durableWrites++;
        assert.deepEqual(found, w.data, `acknowledged write at ${w.offset} (+${w.data.length}) lost`);
        continue;
      }
      // (c) the others, sector by sector: new or old
      for (let at = 0; at < found.length; at += SECTOR) {
        const sector = found.subarray(at, at + SECTOR);
        assert.ok(
          sector.equals(w.data.subarray(at, at + SECTOR)) || sector.every((x) => x === 0),
          `sector ${(w.offset + at) / SECTOR} (write at ${w.offset} +${w.data.length}, ack ${w.ack}) holds neither the write's data nor zeroes`,
        );
      }
    }
    return { cutByWorkload, rowsChecked: rows.size, writesChecked: writes.length, durableWrites };
  } finally {
    await b.stop();
  }
}

for (const level of [5, 6] as const) {
  test(`raid${level}: after a power cut mid-stripe, reassembly and resync leave parity consistent and acknowledged writes intact`, async () => {
    const total = { cutByWorkload: 0, rowsChecked: 0, writesChecked: 0, durableWrites: 0 };
    const ran = await runProperty({
      name: `raid${level}: after a power cut mid-stripe`,
      file: FILE,
      seed: SEED,
      stream: level,
      numRuns: RUNS_PER_LEVEL,
      property: fc.asyncProperty(
        fc.array(opArb, { minLength: 4, maxLength: 40 }),
        fc.nat(120),
        fc.constantFrom<CutMode>('random', 'drop', 'keep'),
        fc.integer({ min: 1, max: 1 << 30 }),
        async (ops, cutAfter, mode, seed) => {
          const stats = await runCase(level, ops, cutAfter, mode, seed);
          total.cutByWorkload += stats.cutByWorkload ? 1 : 0;
          total.rowsChecked += stats.rowsChecked;
          total.writesChecked += stats.writesChecked;
          total.durableWrites += stats.durableWrites;
        },
      ),
      endOnFailure: true,
    });
    console.log(
      `power cut raid${level} (${level === 5 ? 4 : 5} members): ${ran} cases ran, seed ${SEED}; ` +
        `${total.cutByWorkload} cut by the workload's writes, the rest after it; ${total.rowsChecked} stripe rows parity-checked; ` +
        `${total.writesChecked} writes checked, ${total.durableWrites} of them durable`,
    );
    // A run (not the replay of one case) that never cut in the middle of writes or never had a
    // durable write to check exercised none of what the property is about.
    if (process.env[PATH_ENV] === undefined) {
      assert.ok(total.cutByWorkload > 0, `raid${level}: no case of ${ran} cut the power in the middle of its writes`);
      assert.ok(total.durableWrites > 0, `raid${level}: no case of ${ran} had a durable write to check`);
    }
  });
}
