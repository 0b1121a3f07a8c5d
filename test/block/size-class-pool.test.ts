// SizeClassPool: buffers by power-of-two size, handed out as views of exactly the length asked,
// reused across lengths of one size, held to the pool's byte limit, trimmed on request, and
// never taking in a buffer it could not have given (a view inside a larger allocation).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SizeClassPool } from '../../src/block/size-class-pool.js';

test('a buffer given back serves the next request of any length of its size', () => {
  const pool = new SizeClassPool(1 << 20);
  const a = pool.take(5000);
  assert.equal(a.length, 5000);
  assert.equal(a.buffer.byteLength, 8192, 'the next power of two');
  pool.give(a);
  assert.equal(pool.freeBytes, 8192);
  const b = pool.take(8192);
  assert.equal(b.buffer, a.buffer);
  assert.equal(b.length, 8192);
  assert.equal(pool.freeBytes, 0);
  assert.equal(pool.take(100).buffer.byteLength, 4096, 'at least 4 KiB');
  assert.notEqual(pool.take(8192).buffer, a.buffer, 'a buffer in use is not handed out twice');
});

test('the pool keeps at most its limit, lets go of the largest first when trimmed, and refuses foreign views', () => {
  const pool = new SizeClassPool(3 * 65536);
  const bufs = [pool.take(65536), pool.take(65536), pool.take(65536), pool.take(65536), pool.take(4096)];
  for (const b of bufs) pool.give(b);
  assert.equal(pool.freeBytes, 3 * 65536, 'the fourth 64 KiB buffer and the 4 KiB one are over the limit');
  pool.trim(65536 + 4096);
  assert.equal(pool.freeBytes, 65536);
  pool.give(Buffer.alloc(65536 * 2).subarray(65536));
  pool.give(Buffer.alloc(3000));
  assert.equal(pool.freeBytes, 65536, 'a view that does not start its allocation, or an odd size, is not taken');
});
