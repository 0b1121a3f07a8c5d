// Everything the node plugin tells the outside world about its volumes, behind one object: the
// status reporter (RaidVolume + Events, when settings.status) and the metrics (served when
// settings.metrics). The CSI layer creates one at start and feeds it VolumeStatus snapshots;
// nothing here blocks or throws on API trouble.
//
//   const reporting = await startNodeReporting(nodeId, config.reporting);
//   reporting.update(snapshot); reporting.remove(volumeId); reporting.setPool(disks);
//   await reporting.close();

import { KubeClusterApi, type ClusterApi } from './cluster-api.js';
import type { K8sError } from './errors.js';
import { startMetricsServer, type MetricsServer } from './metrics-server.js';
import { StatusReporter } from './status-reporter.js';
import { VolumeMetrics } from './volume-metrics.js';
import type { PoolDiskStatus, VolumeStatus } from './volume-status.js';

/** What the node reports (the CSI layer's config resolves it). */
export interface ReportingSettings {
  /** Keep RaidVolume objects and write Events. */
  status: boolean;
  /** Least milliseconds between two status writes of one volume. */
  statusMinIntervalMs: number;
  /** host:port of the metrics endpoint; absent: no metrics server. */
  metrics?: { host: string; port: number };
}

export interface NodeReporting {
  readonly metrics: VolumeMetrics;
  /** Bound metrics port, when served. */
  readonly metricsPort?: number;
  update(snapshot: VolumeStatus): void;
  remove(name: string): void;
  setPool(disks: readonly PoolDiskStatus[]): void;
  close(): Promise<void>;
}

export async function startNodeReporting(
  node: string,
  settings: ReportingSettings,
  options: { api?: ClusterApi; kubeconfig?: string; onError?: (err: K8sError) => void } = {},
): Promise<NodeReporting> {
  const metrics = new VolumeMetrics(node);
  const reporter = settings.status
    ? new StatusReporter(options.api ?? new KubeClusterApi(options.kubeconfig), { node, minIntervalMs: settings.statusMinIntervalMs, onError: options.onError })
    : undefined;
  let server: MetricsServer | undefined;
  if (settings.metrics) server = await startMetricsServer(metrics.registry, settings.metrics.port, settings.metrics.host);
  return {
    metrics,
    metricsPort: server?.port,
    update(snapshot) {
      // Metrics first: it validates the snapshot and throws EINVAL before anything is queued.
      metrics.update(snapshot);
      reporter?.update(snapshot);
    },
    remove(name) {
      metrics.remove(name);
      reporter?.remove(name);
    },
    setPool(disks) {
      metrics.setPool(disks);
    },
    async close() {
      await reporter?.close();
      await server?.close();
    },
  };
}
