// LlBitmap.counts(): the chunks per state, counted page by page with the string built-ins
// (chunk-map.ts), equal to counting every chunk's byte one by one, for any mix of states over
// several pages, the superblock's first page included, and bytes that are no state (ignored).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { LlBitmap, MIN_CHUNK_SIZE } from '../../src/md/llbitmap/index.js';
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
