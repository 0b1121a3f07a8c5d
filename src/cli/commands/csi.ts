// `llraid csi`: runs the CSI node plugin (Identity, Controller and Node services) on a unix
// socket until SIGTERM/SIGINT. Volume engines are separate `llraid serve` processes and keep
// running across a plugin restart; the next plugin adopts them.

import type { Command } from 'commander';
import { readFileSync } from 'node:fs';
import { engineCommand } from '../engine-command.js';
import type { RawConfig, ReplicationSettings } from '../../csi/config.js';
import type { ReplicationCluster } from '../../csi/replication-runtime.js';
import type { VolumeRecord } from '../../csi/volume-catalog.js';

interface CsiOptions {
  endpoint?: string;
  nodeId?: string;
  disks?: string;
  attach?: string;
  config?: string;
  runDir?: string;
  maxVolumes?: string;
  defaultCapacity?: string;
  engineHost?: string;
  kubeletDir?: string;
}

/** llraid's version from package.json (importing main.ts from a command would be an import cycle). */
function packageVersion(): string {
  // src/cli/commands/ under tsx, dist/src/cli/commands/ when built: the file is 3 or 4 levels up.
  for (const rel of ['../../../package.json', '../../../../package.json']) {
    try {
      return (JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8')) as { version: string }).version;
    } catch {
      continue;
    }
  }
  return 'unknown';
}

/** The `serve` arguments that assemble a volume's array: its member files, freshest first. */
export function engineSource(volume: VolumeRecord): string[] {
  return volume.members.map((m) => m.path);
}

export function register(program: Command): void {
  program
    .command('csi')
    .description('run the CSI node plugin (identity, controller and node services) on a unix socket')
    .option('--endpoint <endpoint>', 'unix:///path of the CSI socket (LLRAID_ENDPOINT; default unix:///csi/csi.sock)')
    .option('--node-id <id>', 'this node\'s id, used as its topology segment (LLRAID_NODE_ID)')
    .option('--disks <dirs>', 'comma-separated directories, one per node-local disk (LLRAID_DISKS)')
    .option('--attach <mode>', 'kernel, fuse or auto (LLRAID_ATTACH; default auto: kernel when the nbd module exists)')
    .option('--config <file>', 'YAML file with the same settings (endpoint, nodeId, disks, attach, runDir, maxVolumes, defaultCapacity, kubeletDir)')
    .option('--run-dir <dir>', 'engine sockets, logs and FUSE mount points (LLRAID_RUN_DIR; default /run/llraid)')
    .option('--max-volumes <n>', 'volumes this node accepts, 0 for no limit (LLRAID_MAX_VOLUMES)')
    .option('--default-capacity <size>', 'capacity of a volume whose request names none (LLRAID_DEFAULT_CAPACITY; default 1G)')
    .option('--engine-host <socket>', 'engines run in `llraid engine-host` on this socket, so they outlive this process (LLRAID_ENGINE_HOST); default: run them here')
    .option('--kubelet-dir <dir>', 'the kubelet\'s directory; Node calls may only name paths below it (LLRAID_KUBELET_DIR; default /var/lib/kubelet)')
    .action(async (options: CsiOptions) => {
      // Loaded here, not at the top: every `llraid` command registers this one, and gRPC, protobuf
      // and the Kubernetes client would otherwise add some 70 MiB of resident memory to every volume engine
      // (`llraid serve`) on the node.
      const [{ defaultsFor, fromEnvironment, fromFile, resolveConfig }, { startDriver }, { MdArrays }, { startNodeReporting }] =
        await Promise.all([
          import('../../csi/config.js'),
          import('../../csi/driver.js'),
          import('../../csi/md-arrays.js'),
          import('../../k8s/index.js'),
        ]);
      const cli: RawConfig = {
        endpoint: options.endpoint,
        nodeId: options.nodeId,
        disks: options.disks,
        attach: options.attach,
        runDir: options.runDir,
        maxVolumes: options.maxVolumes,
        defaultCapacity: options.defaultCapacity,
        engineHost: options.engineHost,
        kubeletDir: options.kubeletDir,
      };
      const configFile = options.config ?? process.env.LLRAID_CONFIG;
      const config = resolveConfig(cli, fromEnvironment(process.env), configFile ? fromFile(configFile) : {}, defaultsFor(process.env));
      const log = (m: string): void => void process.stderr.write(`llraid csi: ${m}\n`);
      const reporting = await startNodeReporting(config.nodeId, config.reporting, { onError: (e) => log(`status: ${e.message}`) });
      const replication = config.replication ? await replicationCluster(config.nodeId, config.replication, log) : undefined;
      if (reporting.metricsPort !== undefined) log(`serving metrics on port ${reporting.metricsPort}`);
      // A driver that cannot start (its endpoint refused) must not leave the metrics server and
      // the status reporter holding the process open: close them and let the error through.
      const driver = await startDriver(config, {
        arrays: new MdArrays(),
        engineSource,
        // The engine is this same CLI (same node, same loader flags such as tsx), run as `serve`.
        engineCommand: engineCommand(),
        serveArgs: [
          '--sync-speed-min', String(config.tuning.syncSpeedMinKiB), '--sync-speed-max', String(config.tuning.syncSpeedMaxKiB),
          '--bitmap-daemon-sleep', String(config.tuning.bitmapDaemonSleepSeconds),
        ],
        reporting,
        ...(replication ? { replication } : {}),
        version: packageVersion(),
        log,
      }).catch(async (err: unknown) => {
        await reporting.close();
        throw err;
      });
      const signal = await new Promise<NodeJS.Signals>((resolve) => {
        process.once('SIGTERM', () => resolve('SIGTERM'));
        process.once('SIGINT', () => resolve('SIGINT'));
      });
      log(`${signal}: stopping (volume engines keep running${config.engineHost === undefined ? ' while this PID namespace lives' : ' in the engine host'})`);
      await driver.stop();
      await reporting.close();
    });
}

/**
 * The cluster side of replicated volumes (src/k8s): the RaidVolume store (its watch follows this
 * node's volumes only), this node's Lease and the other nodes' liveness from theirs, and what
 * placement needs of a claim's class (room from CSIStorageCapacity, allowedTopologies). Loaded
 * only when replication is configured.
 */
async function replicationCluster(node: string, s: ReplicationSettings, log: (m: string) => void): Promise<ReplicationCluster> {
  const [k8s, { topologyKey }] = await Promise.all([import('../../k8s/index.js'), import('../../csi/topology.js')]);
  const onError = (what: string) => (e: Error): void => log(`${what}: ${e.message}`);
  const leases = new k8s.KubeLeaseApi(undefined, s.namespace);
  const events = new k8s.KubeClusterApi();
  return {
    onTakeOver: (v, from, epoch) => {
      if (!v.claim) return;
      k8s.writeTakeOverEvent(events, node, v.claim, `${node} took over from ${from} (lease expired), epoch ${epoch}`)
        .catch(onError('TakeOver event'));
    },
    store: new k8s.KubeReplicationStore(undefined, { memberNode: node, onError: onError('replicated volumes') }),
    liveness: new k8s.KubeNodeLiveness(leases, { durationSeconds: s.leaseDurationSeconds, onError: onError('node liveness') }),
    keeper: new k8s.KubeLeaseKeeper(leases, {
      node, durationSeconds: s.leaseDurationSeconds, renewSeconds: s.leaseRenewSeconds, memberService: s.memberService, onError: onError('node lease'),
    }),
    reports: new k8s.KubePlacementReports(undefined, { namespace: s.namespace, topologyKey }),
  };
}
