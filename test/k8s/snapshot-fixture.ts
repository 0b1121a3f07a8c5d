// A realistic raid1 VolumeStatus snapshot for the src/k8s tests, with overrides.

import type { VolumeStatus } from '../../src/k8s/volume-status.js';

const GiB = 1024 ** 3;

export function snapshot(overrides: Partial<VolumeStatus> = {}): VolumeStatus {
  return {
    name: 'pvc-1b4e28ba-2fa1-11d2-883f-0016d3cca427',
    node: 'node-a',
    level: 1,
    chunkSize: 0,
    sizeBytes: 10 * GiB,
    claim: { namespace: 'apps', name: 'data' },
    persistentVolume: 'pvc-1b4e28ba-2fa1-11d2-883f-0016d3cca427',
    state: 'clean',
    members: [
      { disk: 'disk-a', path: '/var/lib/llraid/disk-a/pvc-1.img', role: 'active', slot: 0, errors: 0 },
      { disk: 'disk-b', path: '/var/lib/llraid/disk-b/pvc-1.img', role: 'active', slot: 1, errors: 0 },
    ],
    bitmap: {
      chunkSize: 64 * 1024 * 1024,
      counts: { unwritten: 100, clean: 60, dirty: 0, needSync: 0, syncing: 0, needSyncUnwritten: 0, syncingUnwritten: 0, cleanUnwritten: 0 },
    },
    events: 42,
    io: { readOps: 10, readBytes: 40960, writeOps: 5, writeBytes: 20480, flushOps: 2, discardOps: 0, discardBytes: 0 },
    outOfSyncBytes: 0,
    ...overrides,
  };
}

export { GiB };
