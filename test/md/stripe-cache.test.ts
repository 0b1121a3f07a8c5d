// The raid5/6 stripe cache on its own: which sectors count as cached after whole, partial and
// page-crossing puts, forget, eviction, and that rows never share page memory.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { StripeCache } from '../../src/md/parity/stripe-cache.js';

const CHUNK = 64 * 1024;
const bytes = (n: number, v: number): Buffer => Buffer.alloc(n, v);

test('whole sectors of a put are cached, partly written ones are not, across page boundaries', () => {
  const c = new StripeCache(4, CHUNK, 8);
  c.put(0, 1, 3584, bytes(1024, 7)); // sectors 7 and 8: the end of page 0 and the start of page 1
  assert.equal(c.has(0, 1, 3584, 1024), true);
  assert.deepEqual(c.get(0, 1, 3584, 1024), bytes(1024, 7));
  assert.equal(c.has(0, 1, 3072, 1024), false, 'sector 6 was never written');
  c.put(0, 1, 4096 + 100, bytes(200, 9)); // inside sector 8: it now mixes old and new bytes
  assert.equal(c.has(0, 1, 4096, 512), false);
  assert.equal(c.has(0, 1, 3584, 512), true);
  c.put(0, 2, 0, bytes(CHUNK, 3));
  assert.equal(c.has(0, 2, 0, CHUNK), true);
  c.forget(0, 2, 8192, 1024);
  assert.equal(c.has(0, 2, 0, CHUNK), false);
  assert.equal(c.has(0, 2, 0, 8192), true);
  assert.equal(c.has(0, 2, 9216, CHUNK - 9216), true);
  assert.equal(c.has(0, 2, 100, 512), false, 'unaligned ranges are never cached');
});

test('rows never share page memory, and the least recently used row goes first', () => {
  const c = new StripeCache(2, CHUNK, 2);
  for (let row = 0; row < 2; row++) c.put(row, 0, 0, bytes(4096, row + 1));
  assert.deepEqual(c.get(0, 0, 0, 4096), bytes(4096, 1));
  assert.deepEqual(c.get(1, 0, 0, 4096), bytes(4096, 2));
  c.get(0, 0, 0, 4096); // row 0 is now the most recently used
  c.put(2, 0, 0, bytes(4096, 3));
  assert.equal(c.has(1, 0, 0, 4096), false, 'row 1 was evicted');
  assert.deepEqual(c.get(0, 0, 0, 4096), bytes(4096, 1));
  assert.deepEqual(c.get(2, 0, 0, 4096), bytes(4096, 3));
});
