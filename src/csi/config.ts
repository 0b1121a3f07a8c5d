// Configuration of the node plugin (`llraid csi`), every setting in one place: from command-line
// options, LLRAID_* environment variables (what the Helm chart sets) and an optional YAML file,
// in that order of precedence, then one validation. The CSI basics, the engines' tuning (md's
// defaults from md/tuning.ts), the status reporting and metrics settings, and the node's member
// service (its address and the TLS files, which the engine host reads too: memberServiceOf).

import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { DEFAULT_TUNING } from '../md/index.js';
import type { ReportingSettings } from '../k8s/index.js';
import { invalid } from './errors.js';
import type { AttachMode } from './attach.js';
import { sizeOrUndefined } from './parameters.js';

export interface CsiConfig {
  /** unix:///path/to/csi.sock (or a bare path). */
  endpoint: string;
  nodeId: string;
  /** One directory per node-local disk. */
  disks: string[];
  attach: AttachMode | 'auto';
  /** Where engine sockets, logs and FUSE mount points live (tmpfs: gone after a reboot). */
  runDir: string;
  maxVolumes: number;
  /** Bytes, for a CreateVolume that names no capacity. */
  defaultCapacity: number;
  /**
   * The engine host's socket (`llraid engine-host`), when engines run in their own container;
   * undefined: the plugin runs them itself (they then die with the plugin's PID namespace).
   */
  engineHost: string | undefined;
  /**
   * The kubelet's directory (absolute): every path a Node call names (staging, target, volume
   * path) must resolve below it, so a request can never make the plugin mount onto, statfs or
   * remove anything else on the node.
   */
  kubeletDir: string;
  /** Every engine's md tuning. */
  tuning: { syncSpeedMinKiB: number; syncSpeedMaxKiB: number; bitmapDaemonSleepSeconds: number };
  /** What the node reports to the cluster (k8s/node-reporting.ts). */
  reporting: ReportingSettings;
  /** The cluster's TLS files (the chart's Secret): for the member service and engines' remote members. */
  tls: TlsFiles | undefined;
  /** This node's member service, run by the engine host (or by the plugin without one). */
  memberService: MemberServiceConfig | undefined;
  /**
   * Replicated volumes (issue 19): on with the member service (the chart's memberService.enabled
   * sets its address and TLS directory) and the driver's namespace (LLRAID_NAMESPACE, for the node
   * Leases); absent, StorageClasses with replicas ≥ 2 are refused.
   */
  replication?: ReplicationSettings;
  /**
   * The peer endpoint of changed-block tracking: SnapshotMetadata calls forwarded by other nodes'
   * plugins, over gRPC with mutual TLS (the member service's CA and certificate), on the member
   * service's host. Set with LLRAID_SNAPSHOT_METADATA_PEER_PORT, the same port on every node.
   */
  snapshotMetadataPeer?: SnapshotMetadataPeerConfig;
}

export interface SnapshotMetadataPeerConfig {
  /** The member service's host: the address other nodes find in this node's Lease. */
  host: string;
  port: number;
  tls: TlsFiles;
}

export interface ReplicationSettings {
  /** The driver's namespace: where node Leases live. */
  namespace: string;
  /** host:port of this node's member service: other nodes' engines connect there (its Lease says so). */
  memberService: string;
  /** The cluster's member certificate (CN llraid-member): engines present it to other nodes' member services. */
  tls: TlsFiles;
  /** The node Lease's duration D and renewal period R, in seconds. */
  leaseDurationSeconds: number;
  leaseRenewSeconds: number;
}

/** The files of a TLS directory laid out as a kubernetes.io/tls Secret with its CA. */
export interface TlsFiles {
  dir: string;
  /** ca.crt: the cluster CA, which signed every node's certificate. */
  ca: string;
  /** tls.crt and tls.key: this node's certificate (one for the whole cluster, named llraid-member). */
  cert: string;
  key: string;
}

/** `llraid member-serve` as the node runs it: where it listens, with which TLS files, over which disks. */
export interface MemberServiceConfig {
  host: string;
  port: number;
  tls: TlsFiles;
  /** The node's disk directories: the member files it exports are there. */
  disks: string[];
}

/** Settings as given, each a string (or list) before validation. */
export interface RawConfig {
  endpoint?: string;
  nodeId?: string;
  disks?: string | string[];
  attach?: string;
  runDir?: string;
  maxVolumes?: string | number;
  defaultCapacity?: string | number;
  engineHost?: string;
  kubeletDir?: string;
  syncSpeedMin?: string | number;
  syncSpeedMax?: string | number;
  bitmapDaemonSleep?: string | number;
  status?: string | boolean;
  statusMinInterval?: string | number;
  metricsAddress?: string;
  memberServiceListen?: string;
  tlsDir?: string;
  namespace?: string;
  nodeLeaseDuration?: string | number;
  nodeLeaseRenew?: string | number;
  snapshotMetadataPeerPort?: string | number;
}

const envNames: Record<keyof RawConfig, string> = {
  endpoint: 'LLRAID_ENDPOINT',
  nodeId: 'LLRAID_NODE_ID',
  disks: 'LLRAID_DISKS',
  attach: 'LLRAID_ATTACH',
  runDir: 'LLRAID_RUN_DIR',
  maxVolumes: 'LLRAID_MAX_VOLUMES',
  defaultCapacity: 'LLRAID_DEFAULT_CAPACITY',
  engineHost: 'LLRAID_ENGINE_HOST',
  kubeletDir: 'LLRAID_KUBELET_DIR',
  syncSpeedMin: 'LLRAID_SYNC_SPEED_MIN',
  syncSpeedMax: 'LLRAID_SYNC_SPEED_MAX',
  bitmapDaemonSleep: 'LLRAID_BITMAP_DAEMON_SLEEP',
  status: 'LLRAID_STATUS',
  statusMinInterval: 'LLRAID_STATUS_MIN_INTERVAL',
  metricsAddress: 'LLRAID_METRICS_ADDRESS',
  memberServiceListen: 'LLRAID_MEMBER_SERVICE_LISTEN',
  tlsDir: 'LLRAID_TLS_DIR',
  namespace: 'LLRAID_NAMESPACE',
  nodeLeaseDuration: 'LLRAID_NODE_LEASE_DURATION_SECONDS',
  nodeLeaseRenew: 'LLRAID_NODE_LEASE_RENEW_SECONDS',
  snapshotMetadataPeerPort: 'LLRAID_SNAPSHOT_METADATA_PEER_PORT',
};

/** A setting's names, for messages: the YAML key and its environment variable. */
const named = (key: keyof RawConfig): string => `${key} (${envNames[key]})`;

/** A whole number ≥ `min`, or `fallback` when unset. */
function whole(raw: string | number | undefined, key: keyof RawConfig, fallback: number, min: number): number {
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!/^\d+$/.test(String(raw).trim()) || !Number.isSafeInteger(n) || n < min) {
    throw invalid(`${named(key)}: expected a whole number ≥ ${min}, found ${JSON.stringify(raw)}`);
  }
  return n;
}

/** ":9890", "0.0.0.0:9890", "[::]:9890". */
function listenAddress(raw: string, key: keyof RawConfig): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(raw.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw invalid(`${named(key)}: expected [host]:port such as :9890, found ${JSON.stringify(raw)}`);
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port };
}

export function fromEnvironment(env: NodeJS.ProcessEnv): RawConfig {
  const out: RawConfig = {};
  for (const [key, name] of Object.entries(envNames) as Array<[keyof RawConfig, string]>) {
    const v = env[name];
    if (v !== undefined && v !== '') out[key] = v;
  }
  return out;
}

export function fromFile(file: string): RawConfig {
  const doc = parseYaml(readFileSync(file, 'utf8')) as unknown;
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) {
    throw invalid(`config ${file}: expected a YAML mapping, found ${Array.isArray(doc) ? 'a list' : typeof doc}`);
  }
  const known = Object.keys(envNames);
  for (const key of Object.keys(doc)) {
    if (!known.includes(key)) throw invalid(`config ${file}: unknown key ${JSON.stringify(key)}: expected one of ${known.join(', ')}`);
  }
  return doc as RawConfig;
}

/**
 * The lowest layer: status reporting is on by default inside a cluster (Kubernetes sets
 * KUBERNETES_SERVICE_HOST, or a kubeconfig is given) and off for a plugin run by hand or by
 * csi-sanity, which has no API server to report to.
 */
export function defaultsFor(env: NodeJS.ProcessEnv): RawConfig {
  return { status: env.KUBERNETES_SERVICE_HOST || env.KUBECONFIG ? 'on' : 'off' };
}

/** Merges layers (earlier wins) and validates; errors name the setting and what was found. */
export function resolveConfig(...layers: RawConfig[]): CsiConfig {
  const pick = <K extends keyof RawConfig>(k: K): RawConfig[K] => layers.find((l) => l[k] !== undefined)?.[k];
  const endpoint = pick('endpoint') ?? 'unix:///csi/csi.sock';
  const nodeId = pick('nodeId');
  if (!nodeId) throw invalid('node id is not set: expected --node-id, LLRAID_NODE_ID or nodeId in the config file');
  const disks = disksOf(layers);
  const attach = pick('attach') ?? 'auto';
  if (attach !== 'kernel' && attach !== 'fuse' && attach !== 'auto') {
    throw invalid(`attach: expected kernel, fuse or auto, found ${JSON.stringify(attach)}`);
  }
  const maxVolumes = Number(pick('maxVolumes') ?? 0);
  if (!Number.isSafeInteger(maxVolumes) || maxVolumes < 0) {
    throw invalid(`maxVolumes: expected a whole number ≥ 0, found ${JSON.stringify(pick('maxVolumes'))}`);
  }
  const capRaw = pick('defaultCapacity') ?? '1G';
  const defaultCapacity = typeof capRaw === 'number' ? capRaw : sizeOrUndefined(capRaw);
  if (defaultCapacity === undefined || defaultCapacity <= 0) {
    throw invalid(`defaultCapacity: expected a size such as 1G, found ${JSON.stringify(capRaw)}`);
  }
  const engineHost = pick('engineHost');
  const kubeletDir = pick('kubeletDir') ?? '/var/lib/kubelet';
  if (typeof kubeletDir !== 'string' || !path.isAbsolute(kubeletDir)) {
    throw invalid(`kubeletDir: expected an absolute directory such as /var/lib/kubelet, found ${JSON.stringify(kubeletDir)}`);
  }
  // "/" would confine nothing: every path on the node is below it.
  if (path.resolve(kubeletDir) === '/') throw invalid('kubeletDir: expected a directory below /, found / (it would let Node calls reach every path on the node)');
  const tuning = {
    syncSpeedMinKiB: whole(pick('syncSpeedMin'), 'syncSpeedMin', DEFAULT_TUNING.syncSpeedMinKiB, 1),
    syncSpeedMaxKiB: whole(pick('syncSpeedMax'), 'syncSpeedMax', DEFAULT_TUNING.syncSpeedMaxKiB, 1),
    bitmapDaemonSleepSeconds: whole(pick('bitmapDaemonSleep'), 'bitmapDaemonSleep', DEFAULT_TUNING.bitmapDaemonSleepSeconds, 1),
  };
  if (tuning.syncSpeedMaxKiB < tuning.syncSpeedMinKiB) {
    throw invalid(`${named('syncSpeedMax')}: expected at least syncSpeedMin (${tuning.syncSpeedMinKiB}), found ${tuning.syncSpeedMaxKiB}`);
  }
  const statusRaw = String(pick('status') ?? 'off').trim().toLowerCase();
  if (!['on', 'off', 'true', 'false'].includes(statusRaw)) throw invalid(`${named('status')}: expected on or off, found ${JSON.stringify(pick('status'))}`);
  const metricsRaw = pick('metricsAddress');
  const reporting: ReportingSettings = {
    status: statusRaw === 'on' || statusRaw === 'true',
    statusMinIntervalMs: whole(pick('statusMinInterval'), 'statusMinInterval', 5, 0) * 1000,
    ...(metricsRaw ? { metrics: listenAddress(metricsRaw, 'metricsAddress') } : {}),
  };
  const tls = tlsFilesOf(layers);
  const memberService = memberServiceOf(layers, tls, disks);
  const replication = memberService && pick('namespace') ? replicationSettings(pick, memberService) : undefined;
  const snapshotMetadataPeer = peerOf(pick('snapshotMetadataPeerPort'), memberService);
  return {
    ...(snapshotMetadataPeer ? { snapshotMetadataPeer } : {}),
    tuning,
    reporting,
    tls,
    memberService,
    ...(replication ? { replication } : {}),
    endpoint,
    nodeId,
    engineHost: engineHost === undefined || engineHost === '' ? undefined : endpointPath(String(engineHost)),
    disks,
    attach,
    runDir: path.resolve(pick('runDir') ?? '/run/llraid'),
    maxVolumes,
    defaultCapacity,
    kubeletDir: path.resolve(kubeletDir),
  };
}

function disksOf(layers: RawConfig[]): string[] {
  const disksRaw = layers.find((l) => l.disks !== undefined)?.disks;
  const disks = (Array.isArray(disksRaw) ? disksRaw : (disksRaw ?? '').split(','))
    .map((d) => String(d).trim())
    .filter((d) => d !== '')
    .map((d) => path.resolve(d));
  if (disks.length === 0) throw invalid('disks are not set: expected --disks DIR,DIR,..., LLRAID_DISKS or disks in the config file');
  if (new Set(disks).size !== disks.length) throw invalid(`disks: expected distinct directories, found ${disks.join(', ')}`);
  return disks;
}

/** The TLS directory's files, when one is set; the files are checked when they are used. */
function tlsFilesOf(layers: RawConfig[]): TlsFiles | undefined {
  const raw = layers.find((l) => l.tlsDir !== undefined)?.tlsDir;
  if (raw === undefined || raw === '') return undefined;
  if (typeof raw !== 'string' || !path.isAbsolute(raw)) {
    throw invalid(`${named('tlsDir')}: expected an absolute directory holding ca.crt, tls.crt and tls.key, found ${JSON.stringify(raw)}`);
  }
  const dir = path.resolve(raw);
  return { dir, ca: path.join(dir, 'ca.crt'), cert: path.join(dir, 'tls.crt'), key: path.join(dir, 'tls.key') };
}

function memberServiceOf(layers: RawConfig[], tls: TlsFiles | undefined, disks: string[]): MemberServiceConfig | undefined {
  const raw = layers.find((l) => l.memberServiceListen !== undefined)?.memberServiceListen;
  if (raw === undefined || raw === '') return undefined;
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(String(raw).trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || !(port >= 1 && port <= 65535)) {
    throw invalid(`${named('memberServiceListen')}: expected HOST:PORT (the node's IP and a port, such as 10.0.0.5:10809, or [fd00::5]:10809), found ${JSON.stringify(raw)}`);
  }
  if (tls === undefined) {
    throw invalid(`${named('memberServiceListen')} is set but ${named('tlsDir')} is not: the member service serves TCP with TLS only (ca.crt, tls.crt, tls.key)`);
  }
  return { host: m[1] ?? m[2]!, port, tls, disks };
}

/**
 * The peer endpoint: on the member service's host (the node's IP, which its Lease publishes), so
 * it needs a member service, and on another port than the service's.
 */
function peerOf(raw: string | number | undefined, m: MemberServiceConfig | undefined): SnapshotMetadataPeerConfig | undefined {
  if (raw === undefined || raw === '') return undefined;
  const port = whole(raw, 'snapshotMetadataPeerPort', 0, 1);
  if (port > 65535) throw invalid(`${named('snapshotMetadataPeerPort')}: expected a port number 1-65535, found ${JSON.stringify(raw)}`);
  if (m === undefined) {
    throw invalid(`${named('snapshotMetadataPeerPort')} is set but ${named('memberServiceListen')} is not: the peer endpoint listens on the member service's host with its TLS files`);
  }
  if (port === m.port) throw invalid(`${named('snapshotMetadataPeerPort')}: expected another port than the member service's (${m.port}), found ${port}`);
  return { host: m.host, port, tls: m.tls };
}

/**
 * The member service settings of the engine host, which has no CSI settings of its own: the same
 * variables as the plugin's (LLRAID_MEMBER_SERVICE_LISTEN, LLRAID_TLS_DIR, LLRAID_DISKS), checked
 * alike. Undefined when no listen address is set (no member service on this node).
 */
export function memberServiceFromLayers(...layers: RawConfig[]): MemberServiceConfig | undefined {
  if (layers.every((l) => l.memberServiceListen === undefined || l.memberServiceListen === '')) return undefined;
  return memberServiceOf(layers, tlsFilesOf(layers), disksOf(layers));
}

/**
 * The replication settings of a node with a member service: the namespace of the node Leases,
 * whose address must be one other nodes reach (not a wildcard), and the Lease's timing, whose
 * renewals must fit into what the engines may run on (D - max(2, D/4)).
 */
function replicationSettings(pick: <K extends keyof RawConfig>(k: K) => RawConfig[K], m: MemberServiceConfig): ReplicationSettings {
  const namespace = String(pick('namespace'));
  if (m.host === '0.0.0.0' || m.host === '::') {
    throw invalid(`${named('memberServiceListen')}: expected an address other nodes reach (the node's IP, such as 10.0.0.5:10809), found the wildcard ${m.host}`);
  }
  const leaseDurationSeconds = whole(pick('nodeLeaseDuration'), 'nodeLeaseDuration', 20, 4);
  const leaseRenewSeconds = whole(pick('nodeLeaseRenew'), 'nodeLeaseRenew', 5, 1);
  const runway = leaseDurationSeconds - Math.max(2, leaseDurationSeconds / 4);
  if (leaseRenewSeconds >= runway) {
    throw invalid(`${named('nodeLeaseRenew')}: expected less than ${runway} s (the node Lease's ${leaseDurationSeconds} s less its margin), found ${leaseRenewSeconds}`);
  }
  const memberService = m.host.includes(':') ? `[${m.host}]:${m.port}` : `${m.host}:${m.port}`;
  return { namespace, memberService, tls: m.tls, leaseDurationSeconds, leaseRenewSeconds };
}

/** The filesystem path of a unix:// endpoint. */
export function endpointPath(endpoint: string): string {
  if (endpoint.startsWith('unix://')) return endpoint.slice('unix://'.length);
  if (endpoint.includes('://')) throw invalid(`endpoint: expected unix:///path, found ${JSON.stringify(endpoint)}`);
  return endpoint;
}
