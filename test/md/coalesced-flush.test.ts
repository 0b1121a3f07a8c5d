// Bitmap write-out coalescing (md/llbitmap/coalesced-flush.ts): every request of one turn of the
// event loop shares one write-out, which starts at the end of that turn and snapshots what was
// changed before it; a request while one runs gets the next, shared with every other such request.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CoalescedFlush } from '../../src/md/llbitmap/coalesced-flush.js';

/** A flusher whose runs record the value of `state` they saw when they started, and wait for `release`. */
function recorder() {
  const runs: number[] = [];
  let state = 0;
  let release: (() => void) | undefined;
  const flush = new CoalescedFlush(async () => {
    runs.push(state);
    await new Promise<void>((r) => (release = r));
  });
  return {
    flush,
    runs,
    set: (v: number) => (state = v),
    release: () => release?.(),
  };
}

const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

test('requests of one turn share one write-out, started at the end of the turn with everything changed before it', async () => {
  const r = recorder();
  r.set(1);
  const a = r.flush.request();
  r.set(2);
  const b = r.flush.request();
  r.set(3);
  const c = r.flush.request();
  assert.equal(a, b);
  assert.equal(b, c);
  assert.deepEqual(r.runs, [], 'nothing started within the turn');
  await turn();
  assert.deepEqual(r.runs, [3], 'one write-out, which saw the last change of the turn');
  r.release();
  await Promise.all([a, b, c]);
  assert.equal(r.flush.pending(), null);
});

test('a request while a write-out runs gets the next one, shared by every such request; it starts when the first ends', async () => {
  const r = recorder();
  const first = r.flush.request();
  await turn();
  assert.deepEqual(r.runs, [0]);
  r.set(5);
  const second = r.flush.request();
  const third = r.flush.request();
  assert.equal(second, third);
  assert.notEqual(second, first);
  assert.equal(r.flush.pending(), second, 'what a caller with nothing new waits for is the queued one');
  await turn();
  assert.deepEqual(r.runs, [0], 'the next does not start while the first runs');
  r.release();
  await first;
  await turn();
  assert.deepEqual(r.runs, [0, 5]);
  r.release();
  await second;
  assert.equal(r.flush.pending(), null);
});
