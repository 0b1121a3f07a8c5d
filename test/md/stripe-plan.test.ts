// The raid5/6 request plan: rows, column segments and the write steps a segment is cut into.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ParityLayout } from '../../src/md/parity/layout.js';
import { columnSegments, sliceSegment, splitRows } from '../../src/md/parity/stripe-plan.js';

const K = 1024;

test('sliceSegment cuts at multiples of the slice, keeps the written blocks and moves each source by the columns skipped', () => {
  const layout = new ParityLayout({ level: 5, raidDisks: 4, chunkSize: 512 * K });
  // 1 MiB from 64 KiB into row 0: D0 [64K, 512K), D1 whole, D2 [0, 64K).
  const [piece] = splitRows(layout, 64 * K, 1024 * K);
  const segs = columnSegments(layout, piece!);
  assert.deepEqual(segs.map((s) => [s.lo, s.hi, s.written]), [[0, 64 * K, [1, 2]], [64 * K, 512 * K, [0, 1]]]);
  const slices = sliceSegment(segs[1]!, 256 * K);
  assert.deepEqual(slices.map((s) => [s.lo, s.hi, s.written]), [[64 * K, 256 * K, [0, 1]], [256 * K, 512 * K, [0, 1]]]);
  // Each slice's source points at the same column of the caller's buffer as the segment's did.
  for (const s of slices) {
    s.written.forEach((i, k) => assert.equal(s.source[k], segs[1]!.source[k]! + s.lo - segs[1]!.lo, `block ${i}`));
  }
  // Slices tile the segment exactly, each at most one slice long and inside one slice's columns.
  assert.equal(slices.reduce((n, s) => n + s.hi - s.lo, 0), 448 * K);
  for (const s of slices) assert.equal(Math.floor(s.lo / (256 * K)), Math.floor((s.hi - 1) / (256 * K)));
  // A segment inside one slice comes back as it is.
  assert.deepEqual(sliceSegment(segs[0]!, 256 * K), [segs[0]]);
});
