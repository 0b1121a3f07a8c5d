// The three-node cluster of issue 19's tests: the control plane of test-cluster.sh (with its
// bridge, LLRAID_CLUSTER_BRIDGE=1) plus node-a, node-b and node-c, each a network namespace with
// its own address (10.214.0.11, .12, .13), its own two loop-mounted disks and scratch dir, and a
// KubeletStandIn running the chart's engine host and node plugin pods there. The chart is
// installed with fuse attach (no nbd module here) and the member service on.
//
// teardown() always removes everything, whatever failed before: it stops the nodes, unmounts and
// detaches what they left, removes the disks, strips the finalizers of what the stopped plugins
// can no longer finish, uninstalls the chart, deletes the Nodes and the namespaces. An exit hook
// does the synchronous part (kill, unmount, namespaces) if the process ends first;
// control-plane.sh down removes the namespaces in any case.

import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chartDir, DRIVER, NAMESPACE, RELEASE } from './chart.js';
import type { ClusterEnv } from './cluster-env.js';
import { ClusterNet } from './cluster-net.js';
import { KubeTools, type KubeObject } from './kube-tools.js';
import { KubeletStandIn } from './kubelet-stand-in.js';
import { NodeDisks } from './node-disks.js';

export const NODES = [
  { name: 'node-a', address: '10.214.0.11' },
  { name: 'node-b', address: '10.214.0.12' },
  { name: 'node-c', address: '10.214.0.13' },
] as const;
export type NodeName = (typeof NODES)[number]['name'];

const MiB = 1024 * 1024;
/** The member service's port (the chart's default, memberService.port). */
export const MEMBER_PORT = 10809;
/** The name in the member service's certificate (the chart's Secret). */
export const MEMBER_TLS_NAME = 'llraid-member';

export interface ThreeNodesOptions {
  /** Extra `helm install --set` values (e.g. nodeLease.durationSeconds=10). */
  helmSet?: string[];
  /** Size of each disk (two per node, the chart's default pool). */
  diskBytes?: number;
}

export class ThreeNodes {
  readonly kube: KubeTools;
  readonly net: ClusterNet;
  private readonly standIns = new Map<string, KubeletStandIn>();
  private readonly disks = new Map<string, NodeDisks>();
  private installed = false;
  private tornDown = false;
  private readonly exitHook = (): void => this.teardownSync();

  private constructor(readonly env: ClusterEnv) {
    this.kube = new KubeTools(env);
    this.net = new ClusterNet(env);
  }

  /** Brings the three nodes up; on any failure tears down what was made and rethrows. */
  static async start(env: ClusterEnv, options: ThreeNodesOptions = {}): Promise<ThreeNodes> {
    const cluster = new ThreeNodes(env);
    process.once('exit', cluster.exitHook);
    try {
      await cluster.up(options);
    } catch (err) {
      await cluster.teardown().catch((e: unknown) => process.stderr.write(`three-nodes: teardown after a failed start: ${String(e)}\n`));
      throw err;
    }
    return cluster;
  }

  private async up(options: ThreeNodesOptions): Promise<void> {
    for (const n of NODES) await this.net.addNode(n.name, n.address);
    await this.awaitNamespaceGone();
    const set = [
      'attach=fuse', // this machine has no nbd module: nbdfuse and a loop device
      'memberService.enabled=true',
      'sidecars.provisioner.capacityPollInterval=5s',
      'status.minIntervalSeconds=1',
      ...(options.helmSet ?? []),
    ];
    await this.kube.helm(['install', RELEASE, chartDir(this.env), '--namespace', NAMESPACE, '--create-namespace', ...set.flatMap((s) => ['--set', s])]);
    this.installed = true;
    const values = JSON.parse(await this.kube.helm(['get', 'values', RELEASE, '-n', NAMESPACE, '--all', '-o', 'json'])) as {
      diskPool: { disks: { name: string; path: string }[] };
    };
    // One node at a time: the machine has two CPUs, and each node starts four processes.
    for (const n of NODES) {
      const node = new KubeletStandIn(this.env, n.name, { network: this.net.node(n.name) });
      this.standIns.set(n.name, node);
      await node.registerNode();
      const disks = await NodeDisks.create(values.diskPool.disks.map((d) => node.hostPath(d.path)), options.diskBytes ?? 512 * MiB);
      this.disks.set(n.name, disks);
      node.persistentMounts.push(...disks.paths);
      await this.startPods(n.name);
    }
  }

  /** Runs the node's engine host and node plugin pods (again, after a stop or crash). */
  async startPods(name: NodeName | string): Promise<void> {
    const node = this.node(name);
    await node.runDaemonSetPod(NAMESPACE, `${RELEASE}-engines`);
    await node.runDaemonSetPod(NAMESPACE, `${RELEASE}-node`);
  }

  node(name: NodeName | string): KubeletStandIn {
    const n = this.standIns.get(name);
    if (!n) throw new Error(`three-nodes: no node ${name} (nodes: ${[...this.standIns.keys()].join(', ')})`);
    return n;
  }

  get nodes(): KubeletStandIn[] {
    return [...this.standIns.values()];
  }

  /** The mount points of the node's disks (its pool's directories on this machine). */
  diskPaths(name: NodeName | string): string[] {
    return this.disks.get(name)?.paths ?? [];
  }

  /**
   * The chart's member TLS Secret as files in a dir: ca.crt, tls.crt, tls.key (the chart's names)
   * and ca-cert.pem, client-cert.pem, client-key.pem (libnbd's tls-certificates=DIR names).
   */
  async memberTlsDir(): Promise<string> {
    const secret = await this.kube.get<KubeObject & { data?: Record<string, string> }>(['secret', '-n', NAMESPACE, `${RELEASE}-member-tls`]);
    if (!secret?.data) throw new Error(`expected Secret ${NAMESPACE}/${RELEASE}-member-tls with ca.crt, tls.crt, tls.key, found ${secret ? 'no data' : 'none'}`);
    const dir = join(this.env.stateDir, 'member-tls');
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const names: Record<string, string[]> = { 'ca.crt': ['ca-cert.pem'], 'tls.crt': ['client-cert.pem'], 'tls.key': ['client-key.pem'] };
    for (const [key, aliases] of Object.entries(names)) {
      const b64 = secret.data[key];
      if (!b64) throw new Error(`Secret ${NAMESPACE}/${RELEASE}-member-tls: expected key ${key}, found ${Object.keys(secret.data).join(', ')}`);
      for (const f of [key, ...aliases]) writeFileSync(join(dir, f), Buffer.from(b64, 'base64'), { mode: 0o600 });
    }
    return dir;
  }

  /**
   * Runs `nbdinfo --list` from `from`'s namespace against `to`'s member service over TLS with the
   * chart's certificate, verifying the server by the certificate's name: in a mount namespace of
   * its own, /etc/hosts maps llraid-member to `to`'s address (libnbd checks the URI's host name).
   */
  async listMembers(from: NodeName, to: NodeName, timeoutMs = 30_000): Promise<string> {
    const tls = await this.memberTlsDir();
    const address = this.net.node(to).address;
    const hosts = join(tls, `hosts-${to}`);
    writeFileSync(hosts, `${address} ${MEMBER_TLS_NAME}\n`);
    const uri = `nbds://${MEMBER_TLS_NAME}:${MEMBER_PORT}?tls-certificates=${tls}`;
    const { stdout } = await this.net.exec(from, 'unshare', ['-m', 'sh', '-c', 'mount --bind "$1" /etc/hosts && exec nbdinfo --list "$2"', 'sh', hosts, uri], timeoutMs);
    return stdout;
  }

  /** Removes everything start() made, step by step, each whatever the others did; throws the first error at the end. */
  async teardown(): Promise<void> {
    if (this.tornDown) return;
    this.tornDown = true;
    const errors: unknown[] = [];
    const step = async (what: string, fn: () => Promise<unknown>): Promise<void> => {
      try {
        await fn();
      } catch (err) {
        errors.push(new Error(`three-nodes teardown: ${what}: ${(err as Error).message}`, { cause: err }));
      }
    };
    for (const node of this.nodes) await step(`stop ${node.nodeName}`, () => node.stop());
    for (const node of this.nodes) await step(`unmount ${node.nodeName}`, () => node.unmountAll());
    for (const [name, disks] of this.disks) await step(`disks of ${name}`, () => disks.remove());
    for (const node of this.nodes) await step(`what is left mounted on ${node.nodeName}`, () => node.unmountAll({ all: true }));
    this.disks.clear();
    if (this.installed) {
      // The plugins that would remove these finalizers are stopped: without this the RaidVolume
      // CRD (deleted by the uninstall) and the PVs would stay Terminating.
      await step('finalizers of RaidVolumes', () => this.dropFinalizers(['raidvolumes']));
      await step('PVs of the driver', () => this.deleteDriverPVs());
      await step('helm uninstall', () => this.kube.run('helm', ['uninstall', RELEASE, '--namespace', NAMESPACE, '--wait', '--timeout', '120s']));
      // The kubelet would confirm the pods' deletion once their containers are gone; the stand-ins
      // are stopped, so confirm it here (else they stay Terminating and hold the namespace).
      await step('pods', () => this.kube.run('kubectl', ['delete', 'pods', '--all', '-n', NAMESPACE, '--grace-period=0', '--force', '--wait=false']));
      // Waited for: the next test file installs the chart into the same namespace, which a
      // namespace still terminating refuses.
      await step('namespace', () => this.kube.kubectl(['delete', 'namespace', NAMESPACE, '--ignore-not-found', '--wait=true', '--timeout=180s']));
    }
    for (const n of NODES) await step(`Node ${n.name}`, () => this.kube.run('kubectl', ['delete', 'node', n.name, '--wait=false']));
    await step('network namespaces', async () => this.net.removeAll());
    process.removeListener('exit', this.exitHook);
    if (errors.length > 0) throw errors[0];
  }

  /**
   * An earlier test file's release namespace may still be terminating (its pods wait for a kubelet
   * that was stopped): confirm those pods' deletion and wait, as helm cannot install into it.
   */
  private async awaitNamespaceGone(): Promise<void> {
    const ns = await this.kube.get(['namespace', NAMESPACE]);
    if (!ns?.metadata.deletionTimestamp) return;
    await this.kube.run('kubectl', ['delete', 'pods', '--all', '-n', NAMESPACE, '--grace-period=0', '--force', '--wait=false']);
    await this.kube.kubectl(['wait', '--for=delete', `namespace/${NAMESPACE}`, '--timeout=180s']);
  }

  private async dropFinalizers(kinds: string[]): Promise<void> {
    for (const kind of kinds) {
      for (const o of await this.kube.list([kind])) {
        if (((o.metadata.finalizers as string[] | undefined) ?? []).length === 0) continue;
        await this.kube.run('kubectl', ['patch', kind, o.metadata.name, '--type=merge', '-p', '{"metadata":{"finalizers":null}}']);
      }
    }
  }

  private async deleteDriverPVs(): Promise<void> {
    for (const pv of await this.kube.list(['pv'])) {
      if ((pv.spec?.csi as { driver?: string } | undefined)?.driver !== DRIVER) continue;
      await this.kube.run('kubectl', ['patch', 'pv', pv.metadata.name, '--type=merge', '-p', '{"metadata":{"finalizers":null}}']);
      await this.kube.run('kubectl', ['delete', 'pv', pv.metadata.name, '--wait=false']);
    }
  }

  /** What can be done without awaiting, when the process exits before teardown(): kill, unmount, detach, namespaces. */
  private teardownSync(): void {
    if (this.tornDown) return;
    this.net.removeAll();
    const run = (cmd: string, args: string[]): string => {
      try {
        return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 10_000 });
      } catch {
        return '';
      }
    };
    for (const node of this.nodes) {
      const mounts = readFileSync('/proc/self/mounts', 'utf8').split('\n').map((l) => l.split(' ')[1] ?? '')
        .filter((m) => m.startsWith(`${node.dir}/`)).sort((a, b) => b.length - a.length);
      for (const m of mounts) run('umount', ['-l', m.replace(/\\040/g, ' ')]);
      for (const line of run('losetup', ['-l', '-n', '-O', 'NAME,BACK-FILE']).split('\n')) {
        const [dev, file] = line.trim().split(/\s+/, 2);
        if (dev && file?.startsWith(`${node.dir}/`)) run('losetup', ['-d', dev]);
      }
    }
  }
}
