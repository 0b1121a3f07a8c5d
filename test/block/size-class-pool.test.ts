// SizeClassPool: buffers by power-of-two size, handed out as views of exactly the length asked,
// reused across lengths of one size, held to the pool's byte limit, trimmed on request or once
// nothing was taken for a while, and never taking in a buffer it could not have given (a view inside a larger allocation).

import { mock, test } from 'node:test';
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

test('with an idle policy, what is above its keep is let go once nothing of its size was taken for the time given', () => {
  mock.timers.enable({ apis: ['setTimeout'] });
  try {
    const pool = new SizeClassPool(8 << 20, { keepBytes: 1 << 20, afterMs: 1000 });
    const bufs = Array.from({ length: 4 }, () => pool.take(1 << 20));
    for (const b of bufs) pool.give(b);
    assert.equal(pool.freeBytes, 4 << 20);
    mock.timers.tick(600);
    pool.give(pool.take(1 << 20)); // still busy: a take of this size in the window
    mock.timers.tick(600);
    assert.equal(pool.freeBytes, 4 << 20, 'a take came in the window: nothing let go, the timer armed again');
    const small = pool.take(4096);
    mock.timers.tick(600);
    pool.give(small);
    pool.give(pool.take(4096)); // 4 KiB requests go on; 1 MiB ones stopped
    mock.timers.tick(600);
    assert.equal(pool.freeBytes, 4096, 'the 1 MiB buffers, untaken for a window, are let go though 4 KiB ones were taken');
    mock.timers.tick(5000);
    assert.equal(pool.freeBytes, 4096, 'the keep holds what is still taken');
    pool.give(pool.take(1 << 19));
    mock.timers.tick(2000);
    assert.equal(pool.freeBytes, 4096 + (1 << 19), 'at or below the keep nothing is let go');
  } finally {
    mock.timers.reset();
  }
});
