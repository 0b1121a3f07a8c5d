// The sync thread's throttle (md's sync_speed_min/max), as a unit: with the application busy the
// pass slows to its minimum speed; with the application idle it runs at full speed up to the
// maximum. The host here is a stand-in for the array (windows on a modelled member speed, no
// members), and time is virtual: performance.now and setTimeout are a clock that moves only when
// the pass waits, so every assertion is about the throttle's decisions, never the machine's speed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { NoBitmap } from '../../src/md/no-bitmap.js';
import { MAX_WINDOW, SyncThread, type SyncHost, type SyncSummary } from '../../src/md/sync-thread.js';
import { runOnClock, settle, settlesWithoutTime, VirtualClock } from '../support/virtual-clock.js';
import { AppActivity } from '../../src/md/array/sync-control.js';

const MiB = 1024 * 1024;
/** Modelled member speed: a 1 MiB window takes 4 virtual ms (256 MiB/s), far above min, below max. */
const WINDOW_MS = 4;

function host(clock: VirtualClock, over: Partial<SyncHost>): SyncHost {
  return {
    mode: 'resync', from: 0, bitmapGuided: true, syncSize: 2 * MiB, targetBytes: 2 * MiB, bitmap: new NoBitmap(),
    speed: () => ({ min: 1000, max: 1_000_000 }), appBusy: () => false,
    lock: async () => () => {},
    window: async (_mode, _offset, length) => {
      clock.now += (length / MiB) * WINDOW_MS;
      return { mismatches: 0, bytesWritten: 0 };
    },
    hasTargets: () => true, checkpoint: async () => {},
    ...over,
  };
}

/** KiB/s over virtual time. */
function rate(s: SyncSummary): number {
  return s.bytesSynced / 1024 / s.seconds;
}

test('with application I/O active the pass is held to sync_speed_min', async (t) => {
  const clock = new VirtualClock(t);
  const s = await runOnClock(new SyncThread(host(clock, { appBusy: () => true })).run(), clock);
  assert.equal(s.complete, true);
  assert.equal(s.bytesSynced, 2 * MiB);
  // The members could do 256 MiB/s; the pass paused until 2048 KiB had taken 2.048 s.
  assert.ok(rate(s) <= 1000, `ran at ${rate(s).toFixed(0)} KiB/s with the application busy, min 1000`);
  assert.ok(rate(s) >= 1000 * 0.9, `ran at ${rate(s).toFixed(0)} KiB/s, slower than min 1000 without cause`);
});

test('while the application is busy the pass looks again at least every 100 ms', async (t) => {
  const clock = new VirtualClock(t);
  await runOnClock(new SyncThread(host(clock, { appBusy: () => true })).run(), clock);
  assert.ok(clock.delays.length > 0, 'the pass paused');
  assert.ok(Math.max(...clock.delays) <= 100, `longest pause ${Math.max(...clock.delays)} ms`);
});

test('a pass slowed by application I/O returns to full speed once the application goes quiet', async (t) => {
  const clock = new VirtualClock(t);
  // At min (1000 KiB/s) 8 MiB take 8.2 s; the application is busy for the first 0.5 s only.
  const s = await runOnClock(new SyncThread(host(clock, { syncSize: 8 * MiB, appBusy: () => clock.now < 500 })).run(), clock);
  assert.equal(s.complete, true);
  assert.equal(s.bytesSynced, 8 * MiB);
  // Within one busy pause (100 ms) of the quiet moment, plus the windows left at member speed.
  assert.ok(s.seconds * 1000 <= 500 + 100 + 8 * WINDOW_MS, `took ${(s.seconds * 1000).toFixed(0)} virtual ms`);
});

test('with the application idle and the pass under sync_speed_max it never pauses', async (t) => {
  const clock = new VirtualClock(t);
  const s = await runOnClock(new SyncThread(host(clock, { syncSize: 8 * MiB, appBusy: () => false })).run(), clock);
  assert.equal(s.complete, true);
  assert.deepEqual(clock.delays, [], 'no throttle pause');
  assert.equal(s.seconds * 1000, 8 * WINDOW_MS, 'the pass took the members\' time only');
});

test('with the application idle the pass is held to sync_speed_max', async (t) => {
  const clock = new VirtualClock(t);
  const thread = new SyncThread(host(clock, { syncSize: 4 * MiB, speed: () => ({ min: 1000, max: 10_000 }) }));
  const s = await runOnClock(thread.run(), clock);
  assert.equal(s.complete, true);
  assert.ok(rate(s) <= 10_000, `ran at ${rate(s).toFixed(0)} KiB/s, max 10000`);
  assert.ok(rate(s) >= 10_000 * 0.9, `ran at ${rate(s).toFixed(0)} KiB/s, slower than max 10000 with the application idle`);
});

test('a stop request ends the pass at a window boundary with its position', async (t) => {
  const clock = new VirtualClock(t);
  let windows = 0;
  const thread = new SyncThread(host(clock, {
    syncSize: 8 * MAX_WINDOW,
    window: async () => {
      if (++windows === 3) thread.stop();
      return { mismatches: 1, bytesWritten: 0 };
    },
  }));
  const s = await runOnClock(thread.run(), clock);
  assert.equal(s.complete, false);
  assert.equal(s.position, 3 * MAX_WINDOW);
  assert.equal(s.mismatches, 3);
});

test('a stop request during a throttle pause ends the pass at once, not when the pause would end', async (t) => {
  const clock = new VirtualClock(t);
  // max 1 KiB/s: after the first 1 MiB window the pass pauses, 500 ms at a time.
  const thread = new SyncThread(host(clock, { speed: () => ({ min: 1, max: 1 }) }));
  const run = thread.run();
  await settle();
  assert.equal(clock.pending, 1, 'the pass is in a throttle pause');
  const pausedAt = clock.now;
  thread.stop();
  const endedWithoutTime = await settlesWithoutTime(run);
  const s = await runOnClock(run, clock); // lets a pass that missed the stop end too
  assert.ok(endedWithoutTime, 'the pass ended without its pause timer firing');
  assert.equal(clock.now, pausedAt, 'no virtual time passed after the stop');
  assert.equal(clock.pending, 0, 'the pause timer was cleared');
  assert.equal(s.complete, false);
  assert.equal(s.position, MAX_WINDOW);
});

test('the application counts as busy from a request until it has made none for the idle time', () => {
  const activity = new AppActivity(500);
  assert.equal(activity.busy(0, 1000), false, 'no request yet');
  assert.equal(activity.busy(3, 1010), true, 'requests since the last look');
  assert.equal(activity.busy(3, 1509), true, 'none since, but the last was seen 499 ms ago');
  assert.equal(activity.busy(3, 1510), false, 'none for 500 ms');
  assert.equal(activity.busy(4, 9000), true, 'one more, however long after');
});
