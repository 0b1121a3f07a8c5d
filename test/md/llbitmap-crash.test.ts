// Property test of llbitmap's central promise (llbitmap.md A4, E8): at any instant, a chunk with
// a data write in flight (its unplug resolved, its endWrite not yet called) is durable on every
// member in a state that reloads as NeedSync, whatever the daemon, infect and discards do.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { LlBitmap, State, MIN_CHUNK_SIZE } from '../../src/md/llbitmap/index.js';
import { BITMAP_OFFSET, devices, FakeHost, fromImages } from './llbitmap-fixtures.js';

const CS = MIN_CHUNK_SIZE;
const CHUNKS = 4200; // two pages: chunks 0..3071 in page 0, the rest in page 1
const SAFE = new Set<number>([State.Dirty, State.NeedSync, State.Syncing]);

type Op =
  | { t: 'write'; c: number }
  | { t: 'end'; i: number }
  | { t: 'discard'; c: number }
  | { t: 'daemon' }
  | { t: 'tick' }
  | { t: 'crash' };

// Chunks cluster in a few blocks and across the page boundary, so infect and barriers interact.
const chunkArb = fc.oneof(fc.integer({ min: 0, max: 12 }), fc.integer({ min: 3066, max: 3078 }), fc.integer({ min: 4100, max: 4110 }));
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: chunkArb.map((c) => ({ t: 'write' as const, c })) },
  { weight: 4, arbitrary: fc.nat(20).map((i) => ({ t: 'end' as const, i })) },
  { weight: 1, arbitrary: chunkArb.map((c) => ({ t: 'discard' as const, c })) },
  { weight: 2, arbitrary: fc.constant({ t: 'daemon' as const }) },
  { weight: 3, arbitrary: fc.constant({ t: 'tick' as const }) },
  { weight: 2, arbitrary: fc.constant({ t: 'crash' as const }) },
);

test('a chunk with a write in flight is always durable as Dirty/NeedSync/Syncing on every member', async () => {
  // What the property is about: a run in which no crash found a write in flight checked nothing.
  let inFlightChecked = 0;
  let reloadChecked = 0;
  await fc.assert(
    fc.asyncProperty(fc.array(opArb, { minLength: 5, maxLength: 50 }), fc.boolean(), async (ops, parity) => {
      const devs = devices(2, 64 * 1024);
      const host = new FakeHost(devs, parity);
      const bm = await LlBitmap.create(host, { ioSize: 512, syncSize: CHUNKS * CS, spaceBytes: 8192, barrierIdle: 0, daemonSleep: 1 });
      /** Writes whose data may be on its way to the members: unplug resolved, not ended. */
      const issued: number[] = [];
      /** Chunks with a startWrite taken (waiting, unplugging or issued): discards keep off them. */
      const busy = new Map<number, number>();
      const tasks: Promise<void>[] = [];
      const crashes: { images: Buffer[]; inFlight: number[] }[] = [];
      const check = (images: Buffer[], inFlight: number[]) => {
        for (const c of inFlight) {
          inFlightChecked++;
          for (const img of images) {
            const b = img[BITMAP_OFFSET + 1024 + c]!;
            assert.ok(SAFE.has(b), `chunk ${c} in flight is ${b} on disk`);
          }
        }
      };
      for (const op of ops) {
        if (op.t === 'write') {
          busy.set(op.c, (busy.get(op.c) ?? 0) + 1);
          tasks.push(
            (async () => {
              await bm.startWrite(op.c * CS, 512);
              await bm.unplug();
              issued.push(op.c);
            })(),
          );
        } else if (op.t === 'end' && issued.length > 0) {
          const [c] = issued.splice(op.i % issued.length, 1);
          bm.endWrite(c! * CS, 512);
          const n = busy.get(c!)! - 1;
          if (n === 0) busy.delete(c!);
          else busy.set(c!, n);
        } else if (op.t === 'discard' && !busy.has(op.c)) {
          await bm.startDiscard(op.c * CS, CS);
          bm.endDiscard(op.c * CS, CS);
        } else if (op.t === 'daemon') {
          tasks.push(bm.runDaemon());
        } else if (op.t === 'tick') {
          await new Promise((r) => setImmediate(r));
        } else if (op.t === 'crash') {
          // Synchronous: the images and the in-flight set are of the same instant.
          const images = devs.map((d) => Buffer.from(d.durableImage));
          const inFlight = [...issued];
          check(images, inFlight);
          crashes.push({ images, inFlight });
        }
      }
      const images = devs.map((d) => Buffer.from(d.durableImage));
      check(images, [...issued]);
      crashes.push({ images, inFlight: [...issued] });
      // Reassembly from the last crash image resyncs every chunk that had a write in flight.
      const last = crashes[crashes.length - 1]!;
      const bm2 = await LlBitmap.load(new FakeHost(await fromImages(last.images), parity), { ioSize: 512, syncSize: CHUNKS * CS });
      for (const c of last.inFlight) assert.equal(bm2.stateOf(c), State.NeedSync, `chunk ${c} after reload`);
      reloadChecked += last.inFlight.length;
      await bm2.close();
      // Drain: end everything, including writes that were still waiting.
      while (busy.size > 0) {
        await new Promise((r) => setImmediate(r));
        while (issued.length > 0) {
          const c = issued.pop()!;
          bm.endWrite(c * CS, 512);
          const n = busy.get(c)! - 1;
          if (n === 0) busy.delete(c);
          else busy.set(c, n);
        }
      }
      await Promise.all(tasks);
      await bm.close();
    }),
    { numRuns: 60 },
  );
  assert.ok(inFlightChecked > 0, 'no crash of any run found a write in flight');
  assert.ok(reloadChecked > 0, 'no run reloaded a bitmap with a write in flight');
});
