// The raid5/6 stripe cache on its own: which sectors count as cached after whole, partial and
// page-crossing puts, forget, eviction, that rows never share page memory, and that its byte
// budget holds: pages of evicted rows are used again, and a put the budget cannot hold leaves its
// range uncached rather than stale.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { StripeCache } from '../../src/md/parity/stripe-cache.js';

const CHUNK = 64 * 1024;
const bytes = (n: number, v: number): Buffer => Buffer.alloc(n, v);

test('whole sectors of a put are cached, partly written ones are not, across page boundaries', () => {
  const c = new StripeCache(4, CHUNK, 8 * 4 * CHUNK);
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
  const c = new StripeCache(2, CHUNK, 2 * 4096);
  for (let row = 0; row < 2; row++) c.put(row, 0, 0, bytes(4096, row + 1));
  assert.deepEqual(c.get(0, 0, 0, 4096), bytes(4096, 1));
  assert.deepEqual(c.get(1, 0, 0, 4096), bytes(4096, 2));
  c.get(0, 0, 0, 4096); // row 0 is now the most recently used
  c.put(2, 0, 0, bytes(4096, 3));
  assert.equal(c.has(1, 0, 0, 4096), false, 'row 1 was evicted');
  assert.deepEqual(c.get(0, 0, 0, 4096), bytes(4096, 1));
  assert.deepEqual(c.get(2, 0, 0, 4096), bytes(4096, 3));
});

test('the byte budget is never exceeded: evicted rows give their pages to the next ones', () => {
  const budget = 3 * CHUNK;
  const c = new StripeCache(4, CHUNK, budget);
  assert.equal(c.capacity, budget);
  assert.equal(c.allocatedBytes, 0, 'nothing is allocated before the first put');
  for (let row = 0; row < 20; row++) {
    for (let m = 0; m < 2; m++) c.put(row, m, 0, bytes(CHUNK, row * 2 + m + 1));
    assert.ok(c.allocatedBytes <= budget, `row ${row}: ${c.allocatedBytes} bytes held`);
    // The row just written is whole; the oldest rows made room for it.
    assert.deepEqual(c.get(row, 0, 0, CHUNK), bytes(CHUNK, row * 2 + 1));
    assert.deepEqual(c.get(row, 1, 0, CHUNK), bytes(CHUNK, row * 2 + 2));
    if (row >= 2) assert.equal(c.has(row - 2, 0, 0, 4096), false, `row ${row - 2} was evicted`);
  }
  assert.equal(c.allocatedBytes, budget, 'the pages made once are the ones used since');
  // Invalidated rows hand their pages back too.
  c.invalidate(19);
  c.put(30, 3, 0, bytes(CHUNK, 0x30));
  assert.deepEqual(c.get(30, 3, 0, CHUNK), bytes(CHUNK, 0x30));
  assert.equal(c.allocatedBytes, budget);
});

test('a put the budget cannot hold leaves its range uncached, never stale', () => {
  const c = new StripeCache(4, CHUNK, 4 * 4096);
  c.put(0, 0, 0, bytes(2 * 4096, 1));
  assert.equal(c.has(0, 0, 0, 2 * 4096), true);
  // Six pages of one row do not fit in four: its first two pages now hold neither old nor new.
  c.put(0, 0, 0, bytes(6 * 4096, 2));
  assert.equal(c.has(0, 0, 0, 512), false);
  assert.equal(c.get(0, 0, 0, 4096), undefined);
  assert.ok(c.allocatedBytes <= 4 * 4096);
  const none = new StripeCache(4, CHUNK, 0);
  none.put(0, 0, 0, bytes(4096, 1));
  assert.equal(none.has(0, 0, 0, 4096), false, 'a budget of 0 caches nothing');
  assert.equal(none.allocatedBytes, 0);
});

test('copyInto fills the caller buffer on a hit and leaves it alone on a miss', () => {
  const c = new StripeCache(4, CHUNK, 8 * 4096);
  c.put(1, 2, 4096, bytes(8192, 5));
  const out = Buffer.alloc(4096, 0xee);
  assert.equal(c.copyInto(1, 2, 0, out), false);
  assert.deepEqual(out, Buffer.alloc(4096, 0xee));
  assert.equal(c.copyInto(1, 2, 6144, out), true, 'a range across the page boundary');
  assert.deepEqual(out, bytes(4096, 5));
});
