// The node plugin settings the Helm chart passes as LLRAID_* environment variables beyond the
// CSI basics (those are src/csi/config.ts): engine throttling, bitmap daemon, status reporting
// and metrics. Parsed and checked once here; the CSI layer hands them to md and to reporting.

import { K8sError } from './errors.js';

export interface NodeSettings {
  /** md sync_speed_min / sync_speed_max, KiB/s per volume. */
  syncSpeedMinKiB: number;
  syncSpeedMaxKiB: number;
  /** llbitmap daemon_sleep, seconds. */
  bitmapDaemonSleepSeconds: number;
  /** Keep RaidVolume objects and write Events (default: when running in a cluster). */
  status: boolean;
  statusMinIntervalMs: number;
  /** host:port of the metrics endpoint; undefined = no metrics server. */
  metrics?: { host: string; port: number };
}

export const NODE_SETTINGS_ENV = {
  syncSpeedMin: 'LLRAID_SYNC_SPEED_MIN',
  syncSpeedMax: 'LLRAID_SYNC_SPEED_MAX',
  bitmapDaemonSleep: 'LLRAID_BITMAP_DAEMON_SLEEP',
  status: 'LLRAID_STATUS',
  statusMinInterval: 'LLRAID_STATUS_MIN_INTERVAL',
  metricsAddress: 'LLRAID_METRICS_ADDRESS',
} as const;

/** Linux md's defaults (drivers/md/md.c sysctl_speed_limit_min/max) and llbitmap's daemon_sleep. */
export const NODE_SETTINGS_DEFAULTS = { syncSpeedMinKiB: 1000, syncSpeedMaxKiB: 200_000, bitmapDaemonSleepSeconds: 30, statusMinIntervalSeconds: 5 };

function whole(env: NodeJS.ProcessEnv, name: string, fallback: number, min: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!/^\d+$/.test(raw.trim()) || !Number.isSafeInteger(n) || n < min) {
    throw new K8sError('EINVAL', `${name}: expected a whole number ≥ ${min}, found ${JSON.stringify(raw)}`);
  }
  return n;
}

function address(name: string, raw: string): { host: string; port: number } {
  // ":9890", "0.0.0.0:9890", "[::]:9890"
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(raw.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new K8sError('EINVAL', `${name}: expected [host]:port such as :9890, found ${JSON.stringify(raw)}`);
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port };
}

export function nodeSettingsFromEnv(env: NodeJS.ProcessEnv): NodeSettings {
  const e = NODE_SETTINGS_ENV;
  const syncSpeedMinKiB = whole(env, e.syncSpeedMin, NODE_SETTINGS_DEFAULTS.syncSpeedMinKiB, 1);
  const syncSpeedMaxKiB = whole(env, e.syncSpeedMax, NODE_SETTINGS_DEFAULTS.syncSpeedMaxKiB, 1);
  if (syncSpeedMaxKiB < syncSpeedMinKiB) {
    throw new K8sError('EINVAL', `${e.syncSpeedMax}: expected at least ${e.syncSpeedMin} (${syncSpeedMinKiB}), found ${syncSpeedMaxKiB}`);
  }
  // Unset: on inside a cluster (the service host Kubernetes sets, or a kubeconfig given), off
  // for a plugin run by hand or by csi-sanity, which has no API server to report to.
  const inCluster = Boolean(env.KUBERNETES_SERVICE_HOST || env.KUBECONFIG);
  const statusRaw = (env[e.status] ?? (inCluster ? 'on' : 'off')).trim().toLowerCase();
  if (!['on', 'off', 'true', 'false'].includes(statusRaw)) throw new K8sError('EINVAL', `${e.status}: expected on or off, found ${JSON.stringify(env[e.status])}`);
  const metricsRaw = env[e.metricsAddress];
  return {
    syncSpeedMinKiB,
    syncSpeedMaxKiB,
    bitmapDaemonSleepSeconds: whole(env, e.bitmapDaemonSleep, NODE_SETTINGS_DEFAULTS.bitmapDaemonSleepSeconds, 1),
    status: statusRaw === 'on' || statusRaw === 'true',
    statusMinIntervalMs: whole(env, e.statusMinInterval, NODE_SETTINGS_DEFAULTS.statusMinIntervalSeconds, 0) * 1000,
    ...(metricsRaw ? { metrics: address(e.metricsAddress, metricsRaw) } : {}),
  };
}
