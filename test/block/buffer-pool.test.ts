// BufferPool on its own: buffers of the current size come back, another size replaces them, and
// the free list stays within both its count and its byte bound.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BufferPool } from '../../src/block/buffer-pool.js';

test('a pool hands back what it was given, one size at a time, within its count and byte bounds', () => {
  const pool = new BufferPool(4, 3 * 1024);
  const small = [pool.take(512), pool.take(512), pool.take(512), pool.take(512), pool.take(512)];
  for (const b of small) pool.give(b);
  // Four by count (2 KiB, within the byte bound): the fifth was dropped.
  const again = [pool.take(512), pool.take(512), pool.take(512), pool.take(512)];
  assert.equal(new Set(again).size, 4);
  for (const b of again) assert.ok(small.includes(b), 'a kept buffer is handed out again');
  assert.ok(!small.includes(pool.take(512)), 'the pool was empty: a fresh buffer');
  // 1 KiB buffers: the byte bound (3 KiB) keeps three of them, fewer than the count allows.
  const large = [pool.take(1024), pool.take(1024), pool.take(1024), pool.take(1024)];
  for (const b of large) pool.give(b);
  const kept = [pool.take(1024), pool.take(1024), pool.take(1024), pool.take(1024)].filter((b) => large.includes(b));
  assert.equal(kept.length, 3);
  // Another size forgets the first: a 1 KiB take after 512-byte gives is fresh.
  pool.give(again[0]!);
  assert.ok(!large.includes(pool.take(1024)));
  assert.equal(pool.take(512), again[0]);
});
