// Nodes in network namespaces on the control plane's bridge (control-plane.sh with
// LLRAID_CLUSTER_BRIDGE=1, scripts/k8s/README.md): each node a namespace `<prefix>-<node>` with
// its own address in 10.214.0.0/24 on eth0, a veth whose other end `p-<node>` is a port of br0
// in the hub namespace, where 10.214.0.1 reaches the API server. The namespaces are the run's
// own: traffic between nodes never leaves them.
//
//   hub: br0 10.214.0.1/24 ── p-node-a ──veth── eth0 10.214.0.11/24 (ns <prefix>-node-a)
//
// A partition sets the hub's end of the node's veth down: the node's own interface keeps its
// address and routes (it loses carrier), so what it sends is dropped — silence both ways, as when
// a switch port dies — rather than failing at once with "network unreachable".

import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import type { ClusterBridge, ClusterEnv } from './cluster-env.js';

const exec = promisify(execFile);
const TOOL_ENV = { ...process.env, PATH: `/usr/sbin:/usr/bin:/sbin:/bin:${process.env.PATH ?? ''}` };
/** Node names short enough for `p-<node>` to be an interface name (at most 15 characters). */
const NODE_NAME = /^[a-z0-9][-a-z0-9]{0,12}$/;
/** Only this subnet: others belong to other tests or to the machine. */
const SUBNET = /^10\.214\.0\.(\d{1,3})$/;

/** What a KubeletStandIn needs to run a node in its namespace. */
export interface NodeNetwork {
  readonly node: string;
  /** The namespace, for `nsenter --net=/run/netns/<netns>` and `ip -n`. */
  readonly netns: string;
  /** The node's InternalIP, its pods' hostIP and (host network) podIP. */
  readonly address: string;
  /** kube-apiserver as this node reaches it, https://10.214.0.1:<port>. */
  readonly apiServer: string;
  /** Sets the node's link to the bridge up or down (partition and heal). */
  setLink(up: boolean): Promise<void>;
  /** The argv prefix that runs a program in the namespace (nsenter: the same mount namespace). */
  wrap(command: string, args: readonly string[]): { command: string; args: string[] };
}

export class ClusterNet {
  private readonly nodes = new Map<string, NodeNetwork>();
  readonly bridge: ClusterBridge;

  constructor(env: ClusterEnv) {
    if (!env.bridge) {
      throw new Error('expected the control plane started with LLRAID_CLUSTER_BRIDGE=1 (API_SERVER_BRIDGE, LLRAID_CLUSTER_NETNS in its env file), found none: test-cluster.sh sets it');
    }
    if (process.getuid?.() !== 0) throw new Error(`network namespaces need root; this test runs as uid ${process.getuid?.() ?? '?'}`);
    this.bridge = env.bridge;
  }

  /** Makes `node`'s namespace with `address` (10.214.0.2–254) and its veth on the bridge, both up. */
  async addNode(node: string, address: string): Promise<NodeNetwork> {
    if (!NODE_NAME.test(node)) throw new Error(`cluster-net: node name ${JSON.stringify(node)}: expected 1 to 13 of [a-z0-9-]`);
    const host = Number(SUBNET.exec(address)?.[1]);
    if (!(host >= 2 && host <= 254)) throw new Error(`cluster-net: ${address}: expected an address in 10.214.0.2–254 (10.214.0.1 is the bridge)`);
    if (this.nodes.has(node)) throw new Error(`cluster-net: node ${node} exists`);
    const netns = `${this.bridge.prefix}-${node}`;
    const hub = this.bridge.hub;
    const port = `p-${node}`;
    const ip = (args: string[]) => exec('ip', args, { env: TOOL_ENV, timeout: 30_000 });
    await ip(['netns', 'add', netns]);
    const network: NodeNetwork = {
      node,
      netns,
      address,
      apiServer: this.bridge.apiServer,
      setLink: async (up) => {
        await ip(['-n', hub, 'link', 'set', port, up ? 'up' : 'down']);
      },
      wrap: (command, args) => ({ command: 'nsenter', args: [`--net=/run/netns/${netns}`, '--', command, ...args] }),
    };
    this.nodes.set(node, network);
    await ip(['-n', netns, 'link', 'set', 'lo', 'up']);
    await ip(['-n', hub, 'link', 'add', port, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', netns]);
    await ip(['-n', hub, 'link', 'set', port, 'master', 'br0']);
    await ip(['-n', netns, 'addr', 'add', `${address}/24`, 'dev', 'eth0']);
    await ip(['-n', netns, 'link', 'set', 'eth0', 'up']);
    await ip(['-n', hub, 'link', 'set', port, 'up']);
    return network;
  }

  node(name: string): NodeNetwork {
    const n = this.nodes.get(name);
    if (!n) throw new Error(`cluster-net: no node ${name} (nodes: ${[...this.nodes.keys()].join(', ')})`);
    return n;
  }

  /** Runs a short command in `node`'s namespace (nsenter, same mounts); rejects with its output. */
  async exec(node: string, command: string, args: readonly string[], timeoutMs = 60_000): Promise<{ stdout: string; stderr: string }> {
    const w = this.node(node).wrap(command, args);
    try {
      return await exec(w.command, w.args, { env: TOOL_ENV, timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 });
    } catch (err) {
      const e = err as { stdout?: string; stderr?: string; message: string };
      throw new Error(`in ${node}'s namespace: ${command} ${args.join(' ')}: ${e.message}\nstdout: ${e.stdout ?? ''}\nstderr: ${e.stderr ?? ''}`, { cause: err });
    }
  }

  /** The pids of the processes in `node`'s namespace. */
  pids(node: string): number[] {
    return nsPids(this.node(node).netns);
  }

  /**
   * Kills every process left in the nodes' namespaces and deletes them (their veths go with them).
   * Synchronous and safe to call twice, so it also runs from an exit hook.
   */
  removeAll(): void {
    const names = [...this.nodes.values()].map((n) => n.netns);
    this.nodes.clear();
    for (let round = 0; round < 5; round++) {
      const pids = names.flatMap(nsPids);
      if (pids.length === 0) break;
      for (const pid of pids) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // Already gone.
        }
      }
      execFileSync('sleep', ['0.2']);
    }
    for (const ns of names) {
      try {
        execFileSync('ip', ['netns', 'del', ns], { env: TOOL_ENV, stdio: 'ignore', timeout: 10_000 });
      } catch {
        // Already gone.
      }
    }
  }
}

function nsPids(netns: string): number[] {
  try {
    const out = execFileSync('ip', ['netns', 'pids', netns], { env: TOOL_ENV, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 10_000 });
    return out.split('\n').filter((l) => l.trim() !== '').map(Number);
  } catch {
    return [];
  }
}
