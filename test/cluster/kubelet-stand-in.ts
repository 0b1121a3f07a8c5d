// Does, for the cluster tests, what a kubelet and a container runtime would do on one node and
// these machines cannot run: registers the Node and renews its Lease; "runs" the pod that the
// chart's DaemonSet gets on this node by starting each container's program as a local process,
// with the pod's args and env, the container paths of its hostPath mounts mapped to directories
// under the node's scratch dir (in args and env values too: the chart's LLRAID_KUBELET_DIR
// becomes the node's kubelet dir there, the root the plugin confines staging paths to, which
// is where the tests stage), and the pod's ServiceAccount token; does node-driver-registrar's
// part (CSINode from NodeGetInfo); and confirms deletions of pods bound to the node.
//
// With a NodeNetwork (cluster-net.ts) the node is a network namespace of its own: every container
// process runs in it (nsenter --net: same mounts as the test, so staging paths and FUSE mounts are
// seen by both), the Node's InternalIP, the pod's hostIP and podIP (the chart's pods use the
// host network) are the node's address, and the pods reach the API server at the bridge address
// (their kubeconfig and KUBERNETES_SERVICE_HOST/PORT). Without one, all of it is 127.0.0.1.

import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CsiClient } from './csi-client.js';
import type { ClusterEnv } from './cluster-env.js';
import type { NodeNetwork } from './cluster-net.js';
import { KubeTools, waitFor, type KubeObject } from './kube-tools.js';

const exec = promisify(execFile);

interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: { fieldRef?: { fieldPath: string } };
}

interface Container {
  name: string;
  image: string;
  command?: string[];
  args?: string[];
  env?: EnvVar[];
  volumeMounts?: { name: string; mountPath: string }[];
}

interface Volume {
  name: string;
  hostPath?: { path: string; type?: string };
  secret?: { secretName: string; defaultMode?: number };
}

interface Managed {
  name: string;
  child: ChildProcess;
}

/** Host paths a container sees as they are: the devices and sysfs the driver attaches through. */
const SHARED_HOST_PATHS = new Set(['/dev', '/sys']);

export interface StandInOptions {
  /** Run the node in this network namespace with its address (cluster-net.ts). */
  network?: NodeNetwork;
}

export interface StopOptions {
  /**
   * SIGKILL everything of the node at once (containers, engines, nbdfuse), as a crash or power
   * loss does, instead of SIGTERM to each container in turn. Mounts are left as they are (a crashed
   * node's mounts are gone with it; the fixture's teardown removes them).
   */
  crash?: boolean;
}

export class KubeletStandIn {
  readonly dir: string;
  /** The node's address: InternalIP, hostIP, podIP. */
  readonly address: string;
  private readonly network: NodeNetwork | undefined;
  private partitioned = false;
  private readonly kube: KubeTools;
  private readonly processes: Managed[] = [];
  private heartbeat: NodeJS.Timeout | undefined;
  private busy = false;
  private csiClient: CsiClient | undefined;
  /**
   * Mount points that survive stop() as a node's disks survive a reboot (the tests' NodeDisks):
   * unmountAll() leaves them and their loop devices unless told `all`.
   */
  readonly persistentMounts: string[] = [];
  /** The CSI socket of the running driver, as the registrar's --csi-address names it. */
  socket = '';

  constructor(
    private readonly env: ClusterEnv,
    readonly nodeName: string,
    options: StandInOptions = {},
  ) {
    this.network = options.network;
    this.address = options.network?.address ?? '127.0.0.1';
    this.dir = join(env.stateDir, 'nodes', nodeName);
    mkdirSync(join(this.dir, 'logs'), { recursive: true });
    this.kube = new KubeTools(env);
  }

  get csi(): CsiClient {
    if (!this.csiClient) throw new Error(`node ${this.nodeName}: no CSI driver runs yet (runDaemonSetPod first)`);
    return this.csiClient;
  }

  /**
   * Where a host path of the node lives on this machine: under the node's scratch dir, except the
   * shared device and sysfs trees.
   */
  hostPath(p: string): string {
    for (const shared of SHARED_HOST_PATHS) if (p === shared || p.startsWith(`${shared}/`)) return p;
    return join(this.dir, 'host', p);
  }

  // ---- the Node object and its heartbeat

  /** kubelet: registers the Node (Ready, with allocatable resources) and starts renewing its Lease. */
  async registerNode(): Promise<void> {
    await this.kube.kubectl(['apply', '-f', '-'], JSON.stringify({
      apiVersion: 'v1',
      kind: 'Node',
      metadata: {
        name: this.nodeName,
        labels: { 'kubernetes.io/hostname': this.nodeName, 'kubernetes.io/os': 'linux', 'kubernetes.io/arch': 'amd64' },
      },
    }));
    await this.patchNodeStatus();
    await this.renewLease();
    if (this.heartbeat) clearInterval(this.heartbeat);
    // The node lifecycle controller taints a node whose Lease is older than its grace period
    // (40 s): renew every 10 s as the kubelet does, and confirm deletions of the node's pods.
    this.heartbeat = setInterval(() => void this.tick(), 10_000);
  }

  private async tick(): Promise<void> {
    // A partitioned node's kubelet cannot reach the API server either.
    if (this.busy || this.partitioned) return;
    this.busy = true;
    try {
      await this.renewLease();
      await this.confirmPodDeletions();
    } catch {
      // A missed beat is retried on the next tick; a lasting failure shows up as a tainted node.
    } finally {
      this.busy = false;
    }
  }

  private async patchNodeStatus(): Promise<void> {
    const now = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
    const resources = { cpu: '2', memory: '8Gi', pods: '110', 'ephemeral-storage': '20Gi' };
    const condition = (type: string, status: string, reason: string) => ({
      type, status, reason, message: 'set by the cluster harness standing in for the kubelet', lastHeartbeatTime: now, lastTransitionTime: now,
    });
    await this.kube.kubectl(['patch', 'node', this.nodeName, '--subresource=status', '--type=merge', '-p', JSON.stringify({
      status: {
        capacity: resources,
        allocatable: resources,
        conditions: [
          condition('Ready', 'True', 'KubeletReady'),
          condition('MemoryPressure', 'False', 'KubeletHasSufficientMemory'),
          condition('DiskPressure', 'False', 'KubeletHasNoDiskPressure'),
          condition('PIDPressure', 'False', 'KubeletHasSufficientPID'),
        ],
        addresses: [{ type: 'InternalIP', address: this.address }, { type: 'Hostname', address: this.nodeName }],
        nodeInfo: {
          machineID: '', systemUUID: '', bootID: '', kernelVersion: '', osImage: 'llraid cluster harness',
          containerRuntimeVersion: 'none://0', kubeletVersion: 'v1.36.3', kubeProxyVersion: '', operatingSystem: 'linux', architecture: 'amd64',
        },
      },
    })]);
  }

  private async renewLease(): Promise<void> {
    // MicroTime: RFC 3339 with microseconds.
    const renewTime = new Date().toISOString().replace(/Z$/, '000Z');
    await this.kube.kubectl(['apply', '-f', '-'], JSON.stringify({
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: { name: this.nodeName, namespace: 'kube-node-lease' },
      spec: { holderIdentity: this.nodeName, leaseDurationSeconds: 40, renewTime },
    }));
  }

  /**
   * kubelet: a pod bound to this node that is being deleted stays Terminating until the kubelet
   * reports its containers gone. Only the DaemonSet pod has processes here, and those stop with
   * stop(); other pods have none, so confirm at once.
   */
  private async confirmPodDeletions(): Promise<void> {
    const pods = await this.kube.list(['pods', '-A', '--field-selector', `spec.nodeName=${this.nodeName}`]);
    for (const pod of pods) {
      if (!pod.metadata.deletionTimestamp) continue;
      await this.kube.run('kubectl', ['delete', 'pod', '-n', pod.metadata.namespace ?? 'default', pod.metadata.name, '--grace-period=0', '--force', '--wait=false']);
    }
  }

  // ---- running the DaemonSet's pod

  /**
   * kubelet + runtime: waits for the pod that DaemonSet `name` gets on this node, then starts its
   * containers as local processes: the llraid plugin first, node-driver-registrar's part once the
   * plugin answers Probe, then the other sidecars. For the engine host's DaemonSet, its one
   * container, until its socket answers. Returns the pod.
   */
  async runDaemonSetPod(namespace: string, name: string, overrides: { env?: Record<string, string> } = {}): Promise<KubeObject> {
    const ds = await this.kube.get(['daemonset', '-n', namespace, name]);
    if (!ds) throw new Error(`expected DaemonSet ${namespace}/${name}, found none`);
    const pod = await waitFor(`a pod of DaemonSet ${name} bound to node ${this.nodeName}`, 60_000, async () => {
      const pods = await this.kube.list(['pods', '-n', namespace, '--field-selector', `spec.nodeName=${this.nodeName}`]);
      return pods.find((p) => (p.metadata.ownerReferences as { uid: string }[] | undefined)?.some((o) => o.uid === ds.metadata.uid));
    }, async () => this.kube.kubectl(['describe', 'daemonset', '-n', namespace, name]));

    const spec = pod.spec as { containers: Container[]; volumes?: Volume[]; serviceAccountName?: string };
    await this.writeSecretVolumes(pod, spec.volumes ?? []);
    await this.reportPodRunning(pod);
    const kubeconfig = await this.serviceAccountKubeconfig(pod);
    const containers = new Map(spec.containers.map((c) => [c.name, c]));
    const byImage = (part: string) => spec.containers.find((c) => c.image.includes(part));

    const plugin = byImage('/llraid');
    if (!plugin) throw new Error(`expected an llraid container in pod ${pod.metadata.name}, found ${[...containers.keys()].join(', ')}`);
    this.startContainer(pod, plugin, spec.volumes ?? [], kubeconfig, overrides.env ?? {});
    if ((plugin.args ?? []).includes('engine-host')) {
      // The engine host's pod has no sidecars: it is up once its socket answers.
      const runDir = this.rewrite(pod, plugin, spec.volumes ?? [], (plugin.env ?? []).find((e) => e.name === 'LLRAID_RUN_DIR')?.value ?? '/run/llraid');
      const hostSocket = join(runDir, 'engine-host.sock');
      // A connect, not the file: a host that was killed leaves its socket file behind.
      await waitFor(`the engine host to listen on ${hostSocket}`, 60_000, async () => (await accepts(hostSocket) ? true : undefined), async () => this.logTail(plugin.name));
      return pod;
    }

    // node-driver-registrar: its --csi-address is the plugin socket, seen through its own mounts.
    const registrar = byImage('csi-node-driver-registrar');
    if (!registrar) throw new Error(`expected a node-driver-registrar container in pod ${pod.metadata.name}, found none`);
    const address = this.rewrite(pod, registrar, spec.volumes ?? [], flagValue(registrar.args ?? [], '--csi-address') ?? '');
    this.socket = address.replace(/^unix:\/\//, '');
    this.csiClient = new CsiClient(this.socket);
    await waitFor(`llraid to answer Probe on ${this.socket}`, 60_000, async () => {
      if (!existsSync(this.socket)) return undefined;
      return this.csiClient?.call('Identity', 'Probe', {}, 2000).then(() => true, () => undefined);
    }, async () => this.logTail(plugin.name));
    await this.registerDriver();

    for (const c of spec.containers) {
      if (c === plugin || c === registrar) continue;
      // The liveness probe sidecar serves the kubelet's probes; with no kubelet probing, it has no one to answer.
      if (c.image.includes('livenessprobe')) continue;
      if (!sidecarProgram(c.image)) throw new Error(`container ${c.name} (${c.image}): the stand-in has no local program for this image`);
      this.startContainer(pod, c, spec.volumes ?? [], kubeconfig, {});
    }
    return pod;
  }

  /**
   * kubelet: the pod's status as its containers start: Running, on the node's address (the pod
   * and its downward-API env see the same hostIP and podIP: the stand-in has no pod network, every
   * pod shares the node's).
   */
  private async reportPodRunning(pod: KubeObject): Promise<void> {
    const ip = this.address;
    const status = {
      phase: 'Running',
      hostIP: ip,
      hostIPs: [{ ip }],
      podIP: ip,
      podIPs: [{ ip }],
      startTime: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
    };
    await this.kube.kubectl(['patch', 'pod', '-n', pod.metadata.namespace ?? 'default', pod.metadata.name, '--subresource=status', '--type=merge',
      '-p', JSON.stringify({ status })]);
    pod.status = { ...(pod.status ?? {}), ...status };
  }

  /**
   * The pod's ServiceAccount credentials as a kubeconfig file (a runtime would mount the token
   * into the container; client-go's in-cluster paths are fixed, so the stand-in hands over a file).
   */
  private async serviceAccountKubeconfig(pod: KubeObject): Promise<string> {
    const sa = String((pod.spec as { serviceAccountName?: string }).serviceAccountName ?? 'default');
    const ns = pod.metadata.namespace ?? 'default';
    const token = (await this.kube.kubectl([
      'create', 'token', sa, '-n', ns, '--duration=4h',
      '--bound-object-kind=Pod', `--bound-object-name=${pod.metadata.name}`, `--bound-object-uid=${String(pod.metadata.uid)}`,
    ])).trim();
    const caFile = join(this.env.stateDir, 'pki', 'ca.crt');
    const file = join(this.dir, `${pod.metadata.name}.kubeconfig`);
    writeFileSync(file, JSON.stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'cluster', cluster: { server: this.apiServer, 'certificate-authority': caFile } }],
      users: [{ name: sa, user: { token } }],
      contexts: [{ name: 'pod', context: { cluster: 'cluster', user: sa, namespace: ns } }],
      'current-context': 'pod',
    }), { mode: 0o600 });
    return file;
  }

  /** Where a secret volume's files are on this machine. */
  private secretDir(pod: KubeObject, volume: string): string {
    return join(this.dir, 'pods', pod.metadata.name, 'secrets', volume);
  }

  /**
   * kubelet: the files of the pod's secret volumes (one per key, mode defaultMode), written under
   * the node's dir; rewrite() maps their mount paths there.
   */
  private async writeSecretVolumes(pod: KubeObject, volumes: Volume[]): Promise<void> {
    for (const v of volumes) {
      if (!v.secret) continue;
      const ns = pod.metadata.namespace ?? 'default';
      const secret = await this.kube.get<{ data?: Record<string, string> }>(['secret', '-n', ns, v.secret.secretName]);
      if (!secret) throw new Error(`pod ${pod.metadata.name}: volume ${v.name} needs Secret ${ns}/${v.secret.secretName}, found none`);
      const dir = this.secretDir(pod, v.name);
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      for (const [key, b64] of Object.entries(secret.data ?? {})) {
        writeFileSync(join(dir, key), Buffer.from(b64, 'base64'), { mode: v.secret.defaultMode ?? 0o644 });
      }
    }
  }

  /**
   * Rewrites container paths (a hostPath or secret mount's mountPath and below) in one arg or env
   * value to local ones.
   */
  private rewrite(pod: KubeObject, c: Container, volumes: Volume[], text: string): string {
    const mounts = (c.volumeMounts ?? [])
      .map((m) => {
        const v = volumes.find((x) => x.name === m.name);
        const local = v?.hostPath ? this.hostPath(v.hostPath.path) : v?.secret ? this.secretDir(pod, v.name) : undefined;
        return { mountPath: m.mountPath, local };
      })
      .filter((m): m is { mountPath: string; local: string } => m.local !== undefined)
      .sort((a, b) => b.mountPath.length - a.mountPath.length);
    // A path starts the value, or follows "=", "," or "unix://"; it ends at "/", "," or the end.
    return text.replace(/(^|=|,|unix:\/\/)(\/[^,=]*)/g, (all, lead: string, path: string) => {
      const m = mounts.find((x) => path === x.mountPath || path.startsWith(`${x.mountPath}/`));
      return m ? `${lead}${m.local}${path.slice(m.mountPath.length)}` : all;
    });
  }

  private startContainer(pod: KubeObject, c: Container, volumes: Volume[], kubeconfig: string, envOverrides: Record<string, string>): void {
    for (const m of c.volumeMounts ?? []) {
      const v = volumes.find((x) => x.name === m.name)?.hostPath;
      if (v && (v.type === 'DirectoryOrCreate' || v.type === 'Directory' || !v.type)) mkdirSync(this.hostPath(v.path), { recursive: true });
    }
    const env: Record<string, string> = {};
    for (const e of c.env ?? []) {
      if (e.value !== undefined) env[e.name] = this.rewrite(pod, c, volumes, expandEnv(e.value, env));
      else if (e.valueFrom?.fieldRef) env[e.name] = fieldValue(pod, e.valueFrom.fieldRef.fieldPath);
      else throw new Error(`container ${c.name}: env ${e.name} uses a source the stand-in does not resolve: ${JSON.stringify(e.valueFrom)}`);
    }
    const args = [...(c.command ?? []), ...(c.args ?? [])].map((a) => this.rewrite(pod, c, volumes, a));
    let command: string;
    let argv: string[];
    if (c.image.includes('/llraid')) {
      command = process.execPath;
      argv = [join(this.env.repo, 'dist', 'src', 'cli', 'bin.cjs'), ...args];
      env.KUBECONFIG = kubeconfig;
    } else {
      const program = sidecarProgram(c.image);
      if (!program) throw new Error(`container ${c.name} (${c.image}): the stand-in has no local program for this image`);
      command = join(this.env.bin, program);
      argv = [...args, `--kubeconfig=${kubeconfig}`];
    }
    Object.assign(env, envOverrides);
    const out = createWriteStream(join(this.dir, 'logs', `${c.name}.log`), { flags: 'a' });
    // What a container runtime gives every container: where the API server's Service is (here
    // the API server itself, as the node reaches it).
    const api = new URL(this.apiServer);
    const runtimeEnv = { KUBERNETES_SERVICE_HOST: api.hostname, KUBERNETES_SERVICE_PORT: api.port || '443' };
    const run = this.network ? this.network.wrap(command, argv) : { command, args: argv };
    const child = spawn(run.command, run.args, {
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: this.dir, ...runtimeEnv, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout?.pipe(out);
    child.stderr?.pipe(out);
    this.processes.push({ name: c.name, child });
  }

  /**
   * node-driver-registrar + kubelet: ask the driver for its name and NodeGetInfo, label the Node
   * with the driver's topology segment and write the CSINode object the kubelet would.
   */
  async registerDriver(): Promise<void> {
    const info = await this.csi.call<{ name: string }>('Identity', 'GetPluginInfo', {});
    const nodeInfo = await this.csi.call<{
      node_id: string;
      max_volumes_per_node: number;
      accessible_topology?: { segments?: Record<string, string> } | null;
    }>('Node', 'NodeGetInfo', {});
    const topology = nodeInfo.accessible_topology?.segments ?? {};
    const node = await this.kube.get(['node', this.nodeName]);
    if (!node) throw new Error(`expected Node ${this.nodeName} to be registered before the driver, found none`);
    await this.kube.kubectl(['label', 'node', this.nodeName, '--overwrite', ...Object.entries(topology).map(([k, v]) => `${k}=${v}`)]);
    await this.kube.kubectl(['apply', '-f', '-'], JSON.stringify({
      apiVersion: 'storage.k8s.io/v1',
      kind: 'CSINode',
      metadata: {
        name: this.nodeName,
        ownerReferences: [{ apiVersion: 'v1', kind: 'Node', name: this.nodeName, uid: node.metadata.uid }],
      },
      spec: {
        drivers: [{
          name: info.name,
          nodeID: nodeInfo.node_id,
          topologyKeys: Object.keys(topology),
          ...(nodeInfo.max_volumes_per_node > 0 ? { allocatable: { count: nodeInfo.max_volumes_per_node } } : {}),
        }],
      },
    }));
  }

  /** kube-apiserver as this node's processes reach it. */
  get apiServer(): string {
    return this.network?.apiServer ?? this.env.apiServer;
  }

  // ---- the network

  /**
   * Cuts the node off (its link to the bridge down): its processes can reach neither the other
   * nodes nor the API server, and its kubelet stops renewing the node's Lease. Only with a network.
   */
  async partition(): Promise<void> {
    if (!this.network) throw new Error(`node ${this.nodeName}: partition() needs a node in a network namespace (StandInOptions.network)`);
    this.partitioned = true;
    await this.network.setLink(false);
  }

  /** Undoes partition(): the link up again, the kubelet's heartbeat resumes. */
  async heal(): Promise<void> {
    if (!this.network) throw new Error(`node ${this.nodeName}: heal() needs a node in a network namespace (StandInOptions.network)`);
    await this.network.setLink(true);
    this.partitioned = false;
  }

  // ---- processes

  /** The pid of a running container process, or undefined. */
  pid(container: string): number | undefined {
    const p = this.processes.find((m) => m.name === container && m.child.exitCode === null && m.child.signalCode === null);
    return p?.child.pid;
  }

  /** The last lines of a container's log, for failure messages. */
  async logTail(container: string, lines = 30): Promise<string> {
    const log = join(this.dir, 'logs', `${container}.log`);
    const text = await readFile(log, 'utf8').catch(() => '');
    return `${container} log (${log}):\n${text.split('\n').slice(-lines).join('\n')}`;
  }

  /**
   * Stops the heartbeat and the containers (newest first), then what a runtime tears down with a
   * pod: processes the plugin left running detached (volume engines, nbdfuse — every process
   * whose command line names this node's dir) and mounts under the node's dir.
   */
  async stop(options: StopOptions = {}): Promise<void> {
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.heartbeat = undefined;
    this.csiClient?.close();
    this.csiClient = undefined;
    if (options.crash) {
      // Every process of the node in one sweep, so no container sees another one stop first.
      await this.killAll();
      await Promise.all(this.processes.map((p) => terminate(p.child)));
      this.processes.length = 0;
      return;
    }
    for (const p of [...this.processes].reverse()) await terminate(p.child);
    this.processes.length = 0;
    await this.killAll();
    await this.unmountAll();
  }

  /** SIGKILL to one container's process (a crash of that container alone). */
  kill(container: string): void {
    const pid = this.pid(container);
    if (pid === undefined) throw new Error(`node ${this.nodeName}: no running container ${container}`);
    process.kill(pid, 'SIGKILL');
  }

  /**
   * SIGKILL to what a runtime's teardown would reach: the containers' processes and whatever they
   * left running detached (volume engines, nbdfuse): every process whose command line names this
   * node's dir and, for a node in a namespace, every process in it.
   */
  private async killAll(): Promise<void> {
    const mine = new Set<number>(this.processes.map((p) => p.child.pid).filter((p): p is number => p !== undefined));
    for (const name of await readdir('/proc')) {
      if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
      const cmdline = await readFile(`/proc/${name}/cmdline`, 'utf8').catch(() => '');
      if (cmdline.split('\0').some((a) => a === this.dir || a.includes(`${this.dir}/`))) mine.add(Number(name));
    }
    if (this.network) {
      const out = await exec('ip', ['netns', 'pids', this.network.netns]).then((r) => r.stdout, () => '');
      for (const l of out.split('\n')) if (/^\d+$/.test(l.trim())) mine.add(Number(l.trim()));
    }
    for (const pid of mine) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
  }

  /**
   * Lazily unmounts everything below the node's dir (staging, publish, FUSE), deepest first;
   * the persistent mounts too only with `all`.
   */
  async unmountAll(options: { all?: boolean } = {}): Promise<void> {
    const keep = (p: string) => !options.all && this.persistentMounts.some((m) => p === m || p === `${m}.ext4` || p === `${m}.xfs`);
    const mounts = (await readFile('/proc/self/mounts', 'utf8'))
      .split('\n')
      .map((l) => l.split(' ')[1]?.replace(/\\040/g, ' '))
      .filter((m): m is string => !!m && m.startsWith(`${this.dir}/`) && !keep(m))
      .sort((a, b) => b.length - a.length);
    for (const m of mounts) await exec('umount', ['-l', m]).catch(() => undefined);
    // Loop devices over files of the node (fuse attach: the volume's nbdfuse file) would keep a
    // dead FUSE mount and its loop number busy: detach them (autoclear finishes once unused).
    const loops = await exec('losetup', ['-l', '-n', '-O', 'NAME,BACK-FILE']).then((r) => r.stdout, () => '');
    for (const line of loops.split('\n')) {
      const [dev, file] = line.trim().split(/\s+/, 2);
      if (dev && file?.startsWith(`${this.dir}/`) && !keep(file)) await exec('losetup', ['-d', dev]).catch(() => undefined);
    }
  }
}

/** Whether a unix socket accepts a connection now. */
function accepts(socket: string): Promise<boolean> {
  if (!existsSync(socket)) return Promise.resolve(false);
  return new Promise((resolve) => {
    const c = connect(socket);
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
}

/**
 * The kubernetes-csi sidecars the stand-in runs, by the image name the chart gives them: the
 * binaries scripts/k8s/build-binaries.sh builds. Each takes --kubeconfig (the pod's
 * ServiceAccount, see serviceAccountKubeconfig).
 */
const SIDECAR_PROGRAMS = ['csi-provisioner', 'csi-resizer', 'csi-snapshotter', 'csi-snapshot-metadata'];

function sidecarProgram(image: string): string | undefined {
  const name = image.split('/').pop()?.split(':')[0];
  return SIDECAR_PROGRAMS.find((p) => p === name);
}

function flagValue(args: string[], flag: string): string | undefined {
  for (const a of args) if (a.startsWith(`${flag}=`)) return a.slice(flag.length + 1);
  return undefined;
}

/** The downward API fields the chart uses. */
function fieldValue(pod: KubeObject, fieldPath: string): string {
  switch (fieldPath) {
    case 'spec.nodeName': return String(pod.spec?.nodeName);
    case 'metadata.name': return pod.metadata.name;
    case 'metadata.namespace': return pod.metadata.namespace ?? 'default';
    case 'metadata.uid': return String(pod.metadata.uid);
    case 'spec.serviceAccountName': return String(pod.spec?.serviceAccountName);
    case 'status.hostIP': return String(pod.status?.hostIP);
    case 'status.podIP': return String(pod.status?.podIP);
    default: throw new Error(`fieldRef ${fieldPath}: the stand-in resolves spec.nodeName, metadata.name, metadata.namespace, metadata.uid, spec.serviceAccountName, status.hostIP and status.podIP`);
  }
}

/**
 * Kubernetes' dependent environment variables: $(NAME) in a value is replaced by the value of an
 * env var defined before it in the container (the chart's LLRAID_MEMBER_SERVICE_LISTEN is
 * $(HOST_IP):<port>); $$(NAME) stays $(NAME) unexpanded, and an undefined name stays as written.
 */
export function expandEnv(value: string, defined: Record<string, string>): string {
  return value.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)/g, (all, name: string | undefined) => {
    if (name === undefined) return '$';
    return defined[name] ?? all;
  });
}

async function terminate(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}
