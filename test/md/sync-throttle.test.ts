// The sync thread's throttle (md's sync_speed_min/max), as a unit: with the application busy the
// pass slows to its minimum speed; with the application idle it runs at full speed up to the
// maximum. The host here is a stand-in for the array: instant windows, no members.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { NoBitmap } from '../../src/md/no-bitmap.js';
import { MAX_WINDOW, SyncThread, type SyncHost } from '../../src/md/sync-thread.js';

function host(over: Partial<SyncHost>): SyncHost {
  return {
    mode: 'resync', from: 0, bitmapGuided: true, syncSize: 2 << 20, targetBytes: 2 << 20, bitmap: new NoBitmap(),
    speed: () => ({ min: 1000, max: 1_000_000 }), appBusy: () => false,
    lock: async () => () => {},
    window: async () => ({ mismatches: 0, bytesWritten: 0 }),
    hasTargets: () => true, checkpoint: async () => {},
    ...over,
  };
}

test('with application I/O active the pass drops to sync_speed_min', async () => {
  const s = await new SyncThread(host({ appBusy: () => true })).run();
  assert.equal(s.complete, true);
  const kibs = (2 << 20) / 1024 / s.seconds;
  assert.ok(kibs < 1000 * 1.3, `ran at ${kibs.toFixed(0)} KiB/s with the application busy, min 1000`);
});

test('with the application idle the pass is not held to sync_speed_min', async () => {
  const s = await new SyncThread(host({ appBusy: () => false })).run();
  const kibs = (2 << 20) / 1024 / s.seconds;
  assert.ok(kibs > 1000 * 2, `ran at ${kibs.toFixed(0)} KiB/s with the application idle`);
});

test('a stop request ends the pass at a window boundary with its position', async () => {
  let windows = 0;
  const t = new SyncThread(host({
    syncSize: 8 * MAX_WINDOW,
    window: async () => {
      if (++windows === 3) t.stop();
      return { mismatches: 1, bytesWritten: 0 };
    },
  }));
  const s = await t.run();
  assert.equal(s.complete, false);
  assert.equal(s.position, 3 * MAX_WINDOW);
  assert.equal(s.mismatches, 3);
});

test('a stop request during a throttle pause ends the pass at once, not when the pause would end', async () => {
  // max 1 KiB/s: after the first 1 MiB window the pass pauses, 500 ms at a time.
  const t = new SyncThread(host({ speed: () => ({ min: 1, max: 1 }) }));
  const run = t.run();
  await new Promise((resolve) => setTimeout(resolve, 20));
  const asked = performance.now();
  t.stop();
  const s = await run;
  assert.equal(s.complete, false);
  assert.equal(s.position, MAX_WINDOW);
  assert.ok(performance.now() - asked < 250, `stopped ${(performance.now() - asked).toFixed(0)} ms after the request`);
});
