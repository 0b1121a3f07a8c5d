// The VolumeStatus a volume becomes for the cluster: live from its engine (state from the sync
// running, members by state, bitmap counts, sync progress and the last pass, I/O counters) and,
// when no engine holds it, from its superblocks (clean, active, degraded or failed). Every
// snapshot passes src/k8s's own check.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkVolumeStatus } from '../../src/k8s/volume-status.js';
import type { ArrayStatus } from '../../src/md/index.js';
import type { VolumeRecord } from '../../src/csi/volume-catalog.js';
import { volumeStatusOf } from '../../src/csi/volume-status-of.js';

const ID = '0123456789abcdef0123456789abcdef';
const COUNTS = { unwritten: 10, clean: 3, dirty: 2, needSync: 1, syncing: 0, needSyncUnwritten: 0, syncingUnwritten: 0, cleanUnwritten: 0 };

function record(over: Partial<VolumeRecord> = {}): VolumeRecord {
  return {
    id: ID, setName: 'ext4:data', nameKey: 'data', fsType: 'ext4', level: 1, raidDisks: 2, chunkSize: 0, bitmap: 'llbitmap',
    memberSize: 64 << 20, capacity: 64 << 20,
    members: [
      { path: `/pool/disk-a/llraid-${ID}-0.img`, role: 0, events: 7n },
      { path: `/pool/disk-b/llraid-${ID}-1.img`, role: 1, events: 7n },
    ],
    missingRoles: [], staleMembers: [], resyncPending: false, ctime: 0, ...over,
  };
}

function live(over: Partial<ArrayStatus> = {}): ArrayStatus {
  return {
    name: 'ext4:data', uuid: 'x', level: 'raid1', raidDisks: 2, size: 64 << 20, chunkSize: 0, layout: 0, state: 'active', fenced: null, degraded: false,
    events: '9', working: 2,
    members: [
      { name: `/pool/disk-a/llraid-${ID}-0.img`, role: 0, state: 'in_sync', devNumber: 0, recoveryOffset: 0, failure: null, errors: 0, writeMostly: false, remote: false, awaited: false, recovery: null },
      { name: `/pool/disk-b/llraid-${ID}-1.img`, role: 1, state: 'in_sync', devNumber: 1, recoveryOffset: 0, failure: null, errors: 0, writeMostly: false, remote: false, awaited: false, recovery: null },
    ],
    missingRoles: [], resyncPending: null, bitmap: { kind: 'llbitmap', chunkSize: 65536, counts: COUNTS },
    sync: null, lastSync: null, bytesSyncedTotal: 0, mismatchCount: 0, syncSize: 64 << 20, syncSpeed: { minKiBs: 1000, maxKiBs: 200000 }, ...over,
  };
}

const base = { nodeId: 'node-a', claim: undefined, offlineBitmap: undefined };

test('a staged volume reports its engine: resync progress, members, bitmap, I/O counters', () => {
  const s = checkVolumeStatus(volumeStatusOf({
    ...base,
    volume: record(),
    claim: { namespace: 'apps', name: 'data', persistentVolume: 'pvc-1' },
    runtime: {
      staged: true, engineRunning: true, attached: true,
      array: live({ sync: { mode: 'resync', position: 1 << 20, size: 64 << 20, percent: 1.5, speedKiBs: 2048, etaSeconds: 31, bytesSynced: 65536, targetBytes: 131072, bytesWritten: 0, bitmapGuided: true, startedAt: 1_700_000_000_000 } }),
      io: { readOps: 1, readBytes: 4096, writeOps: 2, writeBytes: 8192, flushOps: 3, discardOps: 0, discardBytes: 0, zeroOps: 1, zeroBytes: 4096 },
    },
  }));
  assert.equal(s.state, 'resyncing');
  assert.deepEqual(s.claim, { namespace: 'apps', name: 'data' });
  assert.equal(s.persistentVolume, 'pvc-1');
  assert.deepEqual(s.members.map((m) => [m.disk, m.role, m.slot]), [['disk-a', 'active', 0], ['disk-b', 'active', 1]]);
  assert.deepEqual(s.bitmap, { chunkSize: 65536, counts: COUNTS });
  assert.equal(s.sync?.targetBytes, 131072);
  assert.equal(s.sync?.speedBytesPerSecond, 2048 * 1024);
  assert.equal(s.sync?.startedAt.getTime(), 1_700_000_000_000);
  assert.equal(s.events, 9);
  assert.deepEqual([s.io.writeOps, s.io.writeBytes], [3, 12288], 'zeroing counts as writing');
});

test('live states: failed, recovering, degraded, active; a finished pass is the last sync', () => {
  const state = (a: Partial<ArrayStatus>) => volumeStatusOf({ ...base, volume: record(), runtime: { staged: true, engineRunning: true, attached: true, array: live(a) } });
  assert.equal(state({ state: 'failed' }).state, 'failed');
  assert.equal(state({ sync: { mode: 'recovery', position: 0, size: 1, percent: 0, speedKiBs: 0, etaSeconds: null, bytesSynced: 0, targetBytes: 1, bytesWritten: 0, bitmapGuided: false, startedAt: 0 } }).state, 'recovering');
  const degraded = state({ degraded: true, members: [live().members[0]!, { ...live().members[1]!, state: 'faulty', role: null, errors: 4 }] });
  assert.equal(degraded.state, 'degraded');
  assert.deepEqual(degraded.members[1], { disk: 'disk-b', path: `/pool/disk-b/llraid-${ID}-1.img`, role: 'faulty', slot: -1, errors: 4, node: 'node-a' });
  const done = state({ lastSync: { mode: 'resync', complete: true, position: 1, bytesSynced: 196608, bytesSkipped: 0, bytesBridged: 0, bytesWritten: 0, mismatches: 0, seconds: 1.5, size: 64 << 20, startedAt: 0, finishedAt: 1_700_000_001_000 } });
  assert.equal(done.state, 'active');
  assert.deepEqual([done.lastSync?.bytes, done.lastSync?.totalBytes, done.lastSync?.finishedAt.getTime()], [196608, 64 << 20, 1_700_000_001_000]);
});

test('an unstaged volume reports its superblocks: clean, active (unclean stop), degraded, failed', () => {
  const off = (v: Partial<VolumeRecord>) => checkVolumeStatus(volumeStatusOf({
    ...base, volume: record(v), runtime: { staged: false, engineRunning: false, attached: false }, offlineBitmap: { chunkSize: 65536, counts: COUNTS },
  }));
  const clean = off({});
  assert.equal(clean.state, 'clean');
  assert.deepEqual(clean.bitmap, { chunkSize: 65536, counts: COUNTS });
  assert.equal(clean.events, 7);
  assert.equal(off({ resyncPending: true }).state, 'active');
  const stale = `/pool/disk-b/llraid-${ID}-1.img`;
  const degraded = off({ missingRoles: [1], staleMembers: [stale] });
  assert.equal(degraded.state, 'degraded');
  assert.equal(degraded.members[1]?.role, 'faulty');
  assert.equal(off({ missingRoles: [0, 1] }).state, 'failed');
  assert.equal(off({ level: 5, raidDisks: 4, chunkSize: 65536, missingRoles: [0, 2] }).state, 'failed');
});
