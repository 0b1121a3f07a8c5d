// The CSI Identity service: who the plugin is, what it offers, and whether it is ready. Ready
// means the disk pool is usable (every disk a writable directory); otherwise Probe answers
// FAILED_PRECONDITION naming the disk, so the liveness probe restarts nothing it cannot fix.

import type { DiskPool } from './disk-pool.js';

export const driverName = 'csi.llraid.io';

export class IdentityServer {
  constructor(
    private readonly pool: DiskPool,
    private readonly version: string,
    /** Volumes grow while in use (ONLINE) or only while unstaged (OFFLINE): the attach mode decides. */
    private readonly expansion: 'ONLINE' | 'OFFLINE',
    /** Whether snapshots are offered here, and with them the SnapshotMetadata service. */
    private readonly snapshotMetadata: () => Promise<boolean> = () => Promise.resolve(false),
  ) {}

  GetPluginInfo = async (): Promise<object> => ({ name: driverName, vendor_version: this.version, manifest: {} });

  GetPluginCapabilities = async (): Promise<object> => ({
    capabilities: [
      { service: { type: 'CONTROLLER_SERVICE' } },
      { service: { type: 'VOLUME_ACCESSIBILITY_CONSTRAINTS' } },
      ...((await this.snapshotMetadata()) ? [{ service: { type: 'SNAPSHOT_METADATA_SERVICE' } }] : []),
      { volume_expansion: { type: this.expansion } },
    ],
  });

  Probe = async (): Promise<object> => {
    await this.pool.check();
    return { ready: { value: true } };
  };
}
