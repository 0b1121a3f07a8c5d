// The public surface of src/k8s for the CSI and CLI layers: the VolumeStatus snapshot type they
// feed, the status reporter (RaidVolume + Events), the metrics and their HTTP endpoint, and the
// replicated volumes' store, node Lease keeper and liveness observer (replication.ts).

export * from './volume-status.js';
export { K8sError, type K8sErrorCode } from './errors.js';
export { StatusReporter, type ReporterOptions, type ReporterStats } from './status-reporter.js';
export { KubeClusterApi, FIELD_MANAGER, type ClusterApi } from './cluster-api.js';
export { VolumeMetrics } from './volume-metrics.js';
export { startMetricsServer, type MetricsServer } from './metrics-server.js';
export { RAID_VOLUME_API_VERSION, RAID_VOLUME_KIND, RAID_VOLUME_PLURAL, NODE_LABEL } from './raid-volume.js';
export { volumeEvents, type VolumeEvent, type VolumeEventReason } from './volume-events.js';
export { startNodeReporting, type NodeReporting, type ReportingSettings } from './node-reporting.js';
export * from './replication.js';
export { KubeReplicationStore, type ReplicationStoreOptions } from './replication-store.js';
export { KubeLeaseKeeper, type LeaseKeeperOptions } from './node-lease.js';
export { KubeNodeLiveness, type NodeLivenessOptions } from './lease-observer.js';
export { KubeLeaseApi, type LeaseApi, NODE_LEASE_PREFIX, MEMBER_SERVICE_ANNOTATION, OUT_OF_SERVICE_TAINT } from './lease-api.js';
export { REPLICATED_LABEL, MEMBER_FINALIZER_PREFIX, MEMBER_LABEL_PREFIX, memberFinalizer, memberLabel } from './replicated-volume.js';
export { leaseMarginMs } from './node-lease.js';
export { KubePlacementReports, quantityBytes, allowedNodesOf, type PlacementReport, type PlacementReportsOptions } from './placement-reports.js';
export { writeTakeOverEvent } from './takeover-event.js';
