// LlBitmap.counts(): the chunks per state, counted page by page with the string built-ins
// (chunk-map.ts), equal to counting every chunk's byte one by one, for any mix of states over
// several pages, the superblock's first page included, and bytes that are no state (ignored).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Action, LlBitmap, MIN_CHUNK_SIZE } from '../../src/md/llbitmap/index.js';
import { offsetInPage, pageOf } from '../../src/md/llbitmap/geometry.js';
import { devices, FakeHost } from './llbitmap-fixtures.js';

const CHUNKS = 3 * 4096 + 123; // the superblock's page, two whole pages and part of a fourth
const KEYS = ['unwritten', 'clean', 'dirty', 'needSync', 'syncing', 'needSyncUnwritten', 'syncingUnwritten', 'cleanUnwritten'] as const;

test('counts() equals a chunk-by-chunk count for any mix of states and foreign bytes', async () => {
  const host = new FakeHost(devices(2), false);
  const bm = await LlBitmap.create(host, {
    ioSize: 512, syncSize: CHUNKS * MIN_CHUNK_SIZE, spaceBytes: 64 * 1024, barrierIdle: 5, daemonSleep: 30, assumeClean: false,
  });
  // The bitmap's pages, whose bytes the test sets where stateOf reads them.
  const pages = (bm as unknown as { map: { pages: { data: Buffer }[] } }).map.pages;
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.nat(CHUNKS - 1), fc.nat(CHUNKS), fc.integer({ min: 0, max: 9 })), { maxLength: 12 }), (spans) => {
      for (const [from, length, byte] of spans) {
        for (let c = from; c < Math.min(CHUNKS, from + length); c++) pages[pageOf(c)]!.data[offsetInPage(c)] = byte;
      }
      const want = new Array<number>(8).fill(0);
      for (let c = 0; c < CHUNKS; c++) {
        const b = bm.stateOf(c);
        if (b < 8) want[b]!++;
      }
      const got = bm.counts();
      assert.deepEqual(KEYS.map((k) => got[k]), want);
    }),
    { numRuns: 60 },
  );
});

/** What apply() leaves behind: every page's bytes and marked blocks, and whether it asked for a sync. */
interface MapView { pages: { data: Buffer; dirty: Uint8Array }[]; apply(start: number, end: number, action: number): number }

test('apply() over a long range (bytes that change found by a regular expression) leaves what chunk-by-chunk applies leave', async () => {
  const make = async (parity: boolean, degraded: boolean) => {
    const host = new FakeHost(devices(2), parity);
    const bm = await LlBitmap.create(host, {
      ioSize: 512, syncSize: CHUNKS * MIN_CHUNK_SIZE, spaceBytes: 64 * 1024, barrierIdle: 5, daemonSleep: 30, assumeClean: false,
    });
    host.degraded = degraded;
    return { host, bm, map: (bm as unknown as { map: MapView }).map };
  };
  const actions = Object.values(Action).filter((a) => a !== Action.Startsync);
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.tuple(fc.nat(CHUNKS - 1), fc.nat(600), fc.integer({ min: 0, max: 9 })), { maxLength: 10 }),
      fc.constantFrom(...actions), fc.boolean(), fc.boolean(), fc.nat(CHUNKS - 300), fc.integer({ min: 256, max: 2 * 4096 }),
      async (spans, action, parity, degraded, start, length) => {
        const [whole, oneByOne] = [await make(parity, degraded), await make(parity, degraded)];
        for (const side of [whole, oneByOne]) {
          for (const [from, n, byte] of spans) {
            for (let c = from; c < Math.min(CHUNKS, from + n); c++) side.map.pages[pageOf(c)]!.data[offsetInPage(c)] = byte;
          }
          for (const p of side.map.pages) p.dirty.fill(0);
        }
        const end = Math.min(CHUNKS - 1, start + length - 1);
        whole.map.apply(start, end, action);
        for (let c = start; c <= end; c++) oneByOne.map.apply(c, c, action);
        whole.map.pages.forEach((p, i) => {
          assert.ok(p.data.equals(oneByOne.map.pages[i]!.data), `page ${i}: the same bytes`);
          assert.deepEqual(p.dirty, oneByOne.map.pages[i]!.dirty, `page ${i}: the same blocks marked`);
        });
        assert.equal(whole.host.syncRequests > 0, oneByOne.host.syncRequests > 0, 'a sync asked for by both or neither');
        await Promise.all([whole.bm.close?.(), oneByOne.bm.close?.()]);
      },
    ),
    { numRuns: 80 },
  );
});
