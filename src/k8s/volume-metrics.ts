// Prometheus metrics of the node plugin: per volume (state, bitmap chunks, sync bytes, I/O,
// member errors) and per pool disk (capacity, free). Fed the same VolumeStatus snapshots as the
// status reporter; every metric is computed from the latest snapshots at scrape time, so a
// removed volume simply disappears and engine restarts show as counter resets.

import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { BITMAP_STATES, checkVolumeStatus, VOLUME_STATES, type PoolDiskStatus, type VolumeStatus } from './volume-status.js';

export const METRIC_PREFIX = 'llraid_';

export class VolumeMetrics {
  readonly registry = new Registry();
  private readonly volumes = new Map<string, VolumeStatus>();
  private pool: PoolDiskStatus[] = [];
  /** Bytes copied by sync passes that finished, per volume (latest snapshot's lastSync adds). */
  private readonly syncedTotals = new Map<string, { bytes: number; lastFinished: number }>();

  constructor(readonly node: string, options: { processMetrics?: boolean } = {}) {
    this.registry.setDefaultLabels({ node });
    if (options.processMetrics ?? true) collectDefaultMetrics({ register: this.registry, prefix: METRIC_PREFIX });
    const volumes = () => [...this.volumes.values()];
    const pool = () => this.pool;
    const syncedTotals = this.syncedTotals;
    const registers = [this.registry];

    new Gauge({
      name: `${METRIC_PREFIX}volume_state`,
      help: 'State of the volume: 1 for the current state, 0 for the others',
      labelNames: ['volume', 'level', 'state'],
      registers,
      collect() {
        this.reset();
        for (const v of volumes()) for (const st of VOLUME_STATES) this.set({ volume: v.name, level: `raid${v.level}`, state: st }, v.state === st ? 1 : 0);
      },
    });
    new Gauge({
      name: `${METRIC_PREFIX}volume_size_bytes`,
      help: 'Usable size of the volume',
      labelNames: ['volume'],
      registers,
      collect() {
        this.reset();
        for (const v of volumes()) this.set({ volume: v.name }, v.sizeBytes);
      },
    });
    new Gauge({
      name: `${METRIC_PREFIX}volume_members`,
      help: 'Members of the volume by role (active, spare, faulty, rebuilding)',
      labelNames: ['volume', 'role'],
      registers,
      collect() {
        this.reset();
        for (const v of volumes()) for (const role of ['active', 'spare', 'faulty', 'rebuilding'] as const) {
          this.set({ volume: v.name, role }, v.members.filter((m) => m.role === role).length);
        }
      },
    });
    new Gauge({
      // node_exporter's md collector and DRBD's exporter name this the same way
      // (drbd_peerdevice_outofsync_bytes): bytes some member still has to receive.
      name: `${METRIC_PREFIX}volume_out_of_sync_bytes`,
      help: 'Bytes of the volume that some member does not hold yet (a member away or recovering, a resync owed)',
      labelNames: ['volume'],
      registers,
      collect() {
        this.reset();
        for (const v of volumes()) this.set({ volume: v.name }, v.outOfSyncBytes);
      },
    });
    new Gauge({
      name: `${METRIC_PREFIX}volume_bitmap_chunks`,
      help: 'Chunks of the volume llbitmap in each state',
      labelNames: ['volume', 'state'],
      registers,
      collect() {
        this.reset();
        for (const v of volumes()) if (v.bitmap) for (const st of BITMAP_STATES) this.set({ volume: v.name, state: st }, v.bitmap.counts[st]);
      },
    });
    new Counter({
      name: `${METRIC_PREFIX}volume_resync_bytes_total`,
      help: 'Bytes copied by finished sync passes (resync, recovery, repair) since the node plugin started',
      labelNames: ['volume'],
      registers,
      collect() {
        this.reset();
        for (const v of volumes()) this.inc({ volume: v.name }, syncedTotals.get(v.name)?.bytes ?? 0);
      },
    });
    new Gauge({
      name: `${METRIC_PREFIX}volume_resync_in_progress_bytes`,
      help: 'Bytes of the sync space handled so far by the running sync pass (0 when none runs)',
      labelNames: ['volume', 'action'],
      registers,
      collect() {
        this.reset();
        for (const v of volumes()) if (v.sync) this.set({ volume: v.name, action: v.sync.action }, v.sync.doneBytes);
      },
    });
    new Gauge({
      name: `${METRIC_PREFIX}volume_resync_target_bytes`,
      help: 'Bytes the bitmap marked for the running sync pass',
      labelNames: ['volume', 'action'],
      registers,
      collect() {
        this.reset();
        for (const v of volumes()) if (v.sync) this.set({ volume: v.name, action: v.sync.action }, v.sync.targetBytes);
      },
    });
    new Gauge({
      name: `${METRIC_PREFIX}volume_resync_speed_bytes_per_second`,
      help: 'Speed of the running sync pass',
      labelNames: ['volume', 'action'],
      registers,
      collect() {
        this.reset();
        for (const v of volumes()) if (v.sync) this.set({ volume: v.name, action: v.sync.action }, v.sync.speedBytesPerSecond);
      },
    });
    new Counter({
      name: `${METRIC_PREFIX}volume_io_operations_total`,
      help: 'I/O requests served by the volume engine, by operation',
      labelNames: ['volume', 'op'],
      registers,
      collect() {
        this.reset();
        for (const v of volumes()) {
          this.inc({ volume: v.name, op: 'read' }, v.io.readOps);
          this.inc({ volume: v.name, op: 'write' }, v.io.writeOps);
          this.inc({ volume: v.name, op: 'flush' }, v.io.flushOps);
          this.inc({ volume: v.name, op: 'discard' }, v.io.discardOps);
        }
      },
    });
    new Counter({
      name: `${METRIC_PREFIX}volume_io_bytes_total`,
      help: 'Bytes moved by the volume engine, by operation',
      labelNames: ['volume', 'op'],
      registers,
      collect() {
        this.reset();
        for (const v of volumes()) {
          this.inc({ volume: v.name, op: 'read' }, v.io.readBytes);
          this.inc({ volume: v.name, op: 'write' }, v.io.writeBytes);
          this.inc({ volume: v.name, op: 'discard' }, v.io.discardBytes);
        }
      },
    });
    new Counter({
      name: `${METRIC_PREFIX}volume_member_errors_total`,
      help: 'I/O errors returned by each member',
      labelNames: ['volume', 'member', 'disk'],
      registers,
      collect() {
        this.reset();
        for (const v of volumes()) for (const m of v.members) this.inc({ volume: v.name, member: m.path, disk: m.disk }, m.errors);
      },
    });
    new Gauge({
      name: `${METRIC_PREFIX}pool_capacity_bytes`,
      help: 'Size of the filesystem holding each pool disk',
      labelNames: ['disk', 'path'],
      registers,
      collect() {
        this.reset();
        for (const d of pool()) this.set({ disk: d.disk, path: d.path }, d.capacityBytes);
      },
    });
    new Gauge({
      name: `${METRIC_PREFIX}pool_free_bytes`,
      help: 'Free bytes on each pool disk',
      labelNames: ['disk', 'path'],
      registers,
      collect() {
        this.reset();
        for (const d of pool()) this.set({ disk: d.disk, path: d.path }, d.freeBytes);
      },
    });
  }

  /** Records a volume snapshot (throws K8sError EINVAL for a bad one, keeping the old). */
  update(snapshot: VolumeStatus): void {
    const s = structuredClone(checkVolumeStatus(snapshot));
    const r = s.lastSync;
    if (r) {
      const t = this.syncedTotals.get(s.name) ?? { bytes: 0, lastFinished: -Infinity };
      // Count each finished pass once, however many snapshots repeat it.
      if (r.finishedAt.getTime() > t.lastFinished) {
        t.bytes += r.bytes;
        t.lastFinished = r.finishedAt.getTime();
      }
      this.syncedTotals.set(s.name, t);
    }
    this.volumes.set(s.name, s);
  }

  remove(name: string): void {
    this.volumes.delete(name);
    this.syncedTotals.delete(name);
  }

  setPool(disks: readonly PoolDiskStatus[]): void {
    this.pool = disks.map((d) => ({ ...d }));
  }

  /** The exposition text (Prometheus text format 0.0.4). */
  metrics(): Promise<string> {
    return this.registry.metrics();
  }
}
