// The node plugin put together: disk pool, volume catalog, engines, attach mode, the three CSI
// services, the gRPC server on the unix socket endpoint, and the status feed to the cluster. On
// start it recovers the node's state (engines to supervise, dead attachments to clear) before
// answering any call.

import { Server, ServerCredentials } from '@grpc/grpc-js';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { checkSocketPath, claimSocketPath } from '../block/socket-file.js';
import type { Attacher } from './attach.js';
import { createAttacher } from './attachers.js';
import { RemoteAttacher, RemoteEngines } from './engine-host-client.js';
import { enableIoFlusher } from '../engine/io-flusher.js';
import { endpointPath, type CsiConfig } from './config.js';
import type { ArrayBackend } from './array-backend.js';
import { ControllerServer } from './controller-server.js';
import { SnapshotController } from './snapshot-controller.js';
import { SnapshotStore } from './snapshot-store.js';
import { SnapshotMetadataServer, type SnapshotLookup } from './snapshot-metadata-server.js';
import { SnapshotMetadataForwarder } from './snapshot-metadata-forwarder.js';
import { startPeerEndpoint, type PeerEndpoint } from './snapshot-metadata-peer.js';
import { readSnapshotMembers } from '../md/index.js';
import { DiskPool } from './disk-pool.js';
import { EngineSupervisor, type Engines } from '../engine/supervisor.js';
import { toGrpcImplementation, type CallLog, type CsiHandler } from './grpc-service.js';
import { IdentityServer } from './identity-server.js';
import { NodeServer, type EngineSource } from './node-server.js';
import { serviceDefinition, type CsiServiceName } from './proto.js';
import { StatusFeed } from './status-feed.js';
import { VolumeCatalog } from './volume-catalog.js';
import { VolumeLocks } from './volume-locks.js';
import type { NodeReporting } from '../k8s/index.js';
import { MemberServiceRunner } from './member-service-runner.js';
import { ReplicationRuntime, type ReplicationCluster } from './replication-runtime.js';

export interface DriverDeps {
  arrays: ArrayBackend;
  engineSource: EngineSource;
  /** argv prefix that runs the llraid CLI for `serve`. */
  engineCommand: string[];
  /** More `serve` options for every engine (resync speed limits, bitmap daemon period). */
  serveArgs?: string[];
  /** Where volume statuses go (RaidVolume status, Events, metrics); none: nothing is reported. */
  reporting?: NodeReporting;
  /** Between two status looks at every volume (default 2 s). */
  statusIntervalMs?: number;
  /** The cluster side of replicated volumes (k8s/replication.ts); used when config.replication is set. */
  replication?: ReplicationCluster;
  version: string;
  log: (message: string) => void;
}

/**
 * Who runs the node's engines and attachments: the engine host when one is configured (the
 * chart's layout: engines survive a restart of this container), else this process itself.
 * Either way the process that starts them first sets PR_SET_IO_FLUSHER on itself, so they inherit it.
 */
async function volumeRuntime(config: CsiConfig, deps: DriverDeps): Promise<{ engines: Engines; attacher: Attacher; supervisor?: EngineSupervisor }> {
  if (config.engineHost !== undefined) {
    const { attacher, hello } = await RemoteAttacher.connect(config.engineHost);
    deps.log(`engines run in the engine host (pid ${hello.pid} there, attach ${hello.attachMode}, io flusher ${hello.ioFlusher ? 'on' : 'off'})`);
    return { engines: new RemoteEngines(config.engineHost, config.runDir, deps.serveArgs), attacher };
  }
  const flusher = await enableIoFlusher();
  if (!flusher.ok) deps.log(`engines run without PR_SET_IO_FLUSHER: ${flusher.reason}`);
  const supervisor = new EngineSupervisor({
    command: deps.engineCommand, runDir: config.runDir, log: deps.log, ...(deps.serveArgs ? { serveArgs: deps.serveArgs } : {}),
  });
  return { engines: supervisor, attacher: createAttacher(config.attach, config.runDir), supervisor };
}

export interface RunningDriver {
  socket: string;
  attachMode: 'kernel' | 'fuse';
  node: NodeServer;
  /** Resolves once replicated volumes are listed and recovered (at once without replication). */
  replicationReady: Promise<void>;
  stop(): Promise<void>;
}

export async function startDriver(config: CsiConfig, deps: DriverDeps): Promise<RunningDriver> {
  // A refused endpoint (a file there, or another plugin live on it) ends the start before
  // recovery touches any engine or attachment of the node.
  const socket = endpointPath(config.endpoint);
  await checkSocketPath(socket, 'CSI endpoint');
  const pool = new DiskPool(config.disks);
  const catalog = new VolumeCatalog(pool);
  await fs.mkdir(config.runDir, { recursive: true, mode: 0o700 });
  const { engines, attacher, supervisor } = await volumeRuntime(config, deps);
  // Without an engine host this process runs the member service, as it runs the engines; with
  // one, the host does (from its own settings), so that it outlives this container too.
  const memberService = config.engineHost === undefined && config.memberService !== undefined
    ? new MemberServiceRunner(config.memberService, { command: deps.engineCommand, runDir: config.runDir, log: deps.log })
    : undefined;
  await memberService?.start();
  const attachMode = attacher.mode;
  const locks = new VolumeLocks();
  if (config.replication && !deps.replication) deps.log('replication settings given without access to the cluster: replicated volumes are refused');
  const replication = config.replication && deps.replication
    ? new ReplicationRuntime(
      { node: config.nodeId, runDir: config.runDir, settings: config.replication, pool, engines, arrays: deps.arrays, locks, log: deps.log },
      deps.replication,
    )
    : undefined;
  const node = new NodeServer(
    { nodeId: config.nodeId, maxVolumes: config.maxVolumes, kubeletDir: config.kubeletDir },
    catalog,
    engines,
    attacher,
    deps.engineSource,
    locks,
    replication?.stage,
  );
  const snapshotStore = new SnapshotStore(pool);
  const leftovers = await snapshotStore.removeLeftovers();
  if (leftovers.length > 0) deps.log(`removed copies a crash left half-made: ${leftovers.join(', ')}`);
  const snapshots = new SnapshotController(
    pool, catalog, snapshotStore, deps.arrays, node, locks,
    async (id) => (await replication?.index.get(id)) !== undefined,
    config.nodeId,
    deps.log,
  );
  void snapshots.disksWithoutReflink();
  const controller = new ControllerServer(
    { nodeId: config.nodeId, defaultCapacity: config.defaultCapacity },
    pool,
    catalog,
    deps.arrays,
    node,
    locks,
    snapshots,
    replication?.connect((id) => node.runtime(id)),
    replication?.index,
  );
  // Changed-block tracking reads the extent maps of the snapshots' reflink copies: offered with snapshots.
  const ownSnapshot: SnapshotLookup = async (id) => {
    const found = await snapshotStore.get(id);
    if (!found?.complete) return undefined;
    return { volumeId: found.record.sourceVolumeId, capacityBytes: found.record.sizeBytes, members: await readSnapshotMembers(found.members) };
  };
  // Snapshots of other nodes are asked of them (the nodes are found from their Leases, so only
  // with replication's cluster side); calls forwarded here are answered from this node's alone.
  const forwarder = config.snapshotMetadataPeer && deps.replication
    ? new SnapshotMetadataForwarder({ node: config.nodeId, peer: config.snapshotMetadataPeer, directory: deps.replication.liveness })
    : undefined;
  if (config.snapshotMetadataPeer && !deps.replication) deps.log('snapshot metadata peer port given without access to the cluster: calls for other nodes\' snapshots are not forwarded');
  const metadata = new SnapshotMetadataServer(ownSnapshot, forwarder);
  const identity = new IdentityServer(pool, deps.version, node.onlineExpansion ? 'ONLINE' : 'OFFLINE',
    async () => (await snapshots.disksWithoutReflink()).length === 0);

  // Recovery runs beside the server: calls for a volume being recovered wait on its lock.
  const recovery = node.recover().then(
    (r) => {
      if (r.adopted.length + r.cleaned.length > 0) {
        deps.log(`recovered: engines adopted ${r.adopted.join(', ') || '-'}; dead attachments cleared ${r.cleaned.join(', ') || '-'}`);
      }
    },
    (err: unknown) => deps.log(`recovery failed: ${(err as Error).message}`),
  );
  // Replicated volumes once node-local recovery is done: their RaidVolumes listed (the API server
  // may be away a while; node-local volumes do not wait for it), then their engines recovered.
  const replicated = replication
    ? recovery.then(() => replication.start(async () => {
      const r = await node.recoverReplicated();
      if (r.adopted.length + r.stopped.length + r.cleaned.length > 0) {
        deps.log(`recovered replicated volumes: engines adopted ${r.adopted.join(', ') || '-'}; stopped (taken elsewhere) ${r.stopped.join(', ') || '-'}; dead attachments cleared ${r.cleaned.join(', ') || '-'}`);
      }
    }))
    : undefined;
  supervisor?.supervise();
  const feed = deps.reporting
    ? new StatusFeed({
      nodeId: config.nodeId, catalog, pool, runtime: (id) => node.runtime(id), reporting: deps.reporting, log: deps.log,
      snapshots: () => snapshotStore.scan(),
      ...(replication ? { replicated: () => replication.statusReports() } : {}),
      ...(deps.statusIntervalMs === undefined ? {} : { intervalMs: deps.statusIntervalMs }),
    })
    : undefined;
  void recovery.then(() => feed?.start());

  const logCall: CallLog = (method, ms, error, subject) => {
    deps.log(error ? `${method}${subject} failed (${ms} ms): code ${error.code}: ${error.details}` : `${method}${subject} ok (${ms} ms)`);
  };
  // Before the CSI socket: a port that cannot be had ends the start (as the member service's).
  let peer: PeerEndpoint | undefined;
  if (config.snapshotMetadataPeer) {
    peer = await startPeerEndpoint(config.snapshotMetadataPeer, new SnapshotMetadataServer(ownSnapshot), (method, ms, error, subject) => logCall(`peer ${method}`, ms, error, subject));
    deps.log(`serving forwarded SnapshotMetadata calls on ${peer.address} (mutual TLS, ${config.snapshotMetadataPeer.tls.dir})`);
  }
  const server = new Server();
  const services: Array<[CsiServiceName, object]> = [
    ['Identity', identity],
    ['Controller', controller],
    ['Node', node],
    ['SnapshotMetadata', metadata],
  ];
  for (const [name, impl] of services) {
    const def = serviceDefinition(name);
    const streaming = new Set(Object.keys(def).filter((m) => def[m]!.responseStream));
    server.addService(def, toGrpcImplementation(impl as unknown as Record<string, CsiHandler>, Object.keys(def), logCall, streaming));
  }
  await fs.mkdir(path.dirname(socket), { recursive: true });
  await listenPrivately(server, socket);
  deps.log(`serving CSI on unix://${socket} (node ${config.nodeId}, attach ${attachMode}, disks ${config.disks.join(', ')})`);

  return {
    socket,
    attachMode,
    node,
    replicationReady: replicated ?? Promise.resolve(),
    async stop() {
      await recovery;
      await replication?.stop();
      await replicated;
      await feed?.close();
      supervisor?.close();
      // As the engines: it keeps running for the next plugin of this PID namespace to adopt,
      // unless this process is the namespace's first, whose exit would take it down anyway.
      await memberService?.close(process.pid === 1);
      await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
      await peer?.close();
      forwarder?.close();
      // Only the plugin's own socket goes, should anything else have taken the path meanwhile.
      if ((await fs.lstat(socket).catch(() => undefined))?.isSocket()) await fs.rm(socket, { force: true });
    },
  };
}

/**
 * Binds the gRPC server to the unix socket `socket`, mode 0600: only root, as which the kubelet
 * and the sidecars (distroless images, no runAsUser in the chart) connect, may call the plugin.
 * A stale socket from a plugin that died is replaced; anything else at the path (a file, a live
 * plugin's socket) is refused and stays. bind(2) creates the file with the process umask, so
 * the umask is 0177 until the bind has happened, and a chmod makes sure of the mode after it.
 * Recovery runs meanwhile; a file it made in that window would only come out more private.
 */
async function listenPrivately(server: Server, socket: string): Promise<void> {
  await claimSocketPath(socket, 'CSI endpoint');
  const old = process.umask(0o177);
  try {
    await new Promise<void>((resolve, reject) =>
      server.bindAsync(`unix://${socket}`, ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
    );
  } finally {
    process.umask(old);
  }
  await fs.chmod(socket, 0o600);
}
