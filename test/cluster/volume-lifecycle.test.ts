// Issue 7, steps 2–5, against the real control plane and the real kubernetes-csi sidecars: a pod's
// raid1 PVC is provisioned by csi-provisioner (node-deployment) through `llraid csi` and bound by
// the real controllers; capacity is tracked; csi-resizer grows the array; kubectl describe tells
// the story; deleting the PVC deletes the volume. The tests run in order on one volume.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { chartDir, DRIVER, NAMESPACE, RELEASE, storageClassForLevel } from './chart.js';
import { clusterEnv, SKIP_REASON } from './cluster-env.js';
import { KubeTools, waitFor, type KubeObject } from './kube-tools.js';
import { KubeletStandIn } from './kubelet-stand-in.js';
import { NodeDisks } from './node-disks.js';

const exec = promisify(execFile);
const env = clusterEnv();
const skip = env ? false : SKIP_REASON;
const NODE = 'node-a';
const NS = 'lifecycle';
const MiB = 1024 * 1024;
const DISK_BYTES = 512 * MiB;

let kube: KubeTools;
let node: KubeletStandIn;
let disks: NodeDisks | undefined;
let raid1Class: string;
/** Filled in by the provisioning test, used by the ones after it. */
let pvName = '';
let volumeHandle = '';

interface Claim {
  name: string;
  storageClassName: string;
  size: string;
}

function claimAndPod(c: Claim): string {
  const pvc = {
    apiVersion: 'v1',
    kind: 'PersistentVolumeClaim',
    metadata: { name: c.name, namespace: NS },
    spec: { accessModes: ['ReadWriteOnce'], storageClassName: c.storageClassName, resources: { requests: { storage: c.size } } },
  };
  const pod = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: `${c.name}-user`, namespace: NS },
    spec: {
      containers: [{ name: 'app', image: 'registry.invalid/app:0', volumeMounts: [{ name: 'data', mountPath: '/data' }] }],
      volumes: [{ name: 'data', persistentVolumeClaim: { claimName: c.name } }],
    },
  };
  return JSON.stringify({ apiVersion: 'v1', kind: 'List', items: [pvc, pod] });
}

async function events(namespace: string, kind: string, name: string): Promise<{ reason: string; message: string; type: string }[]> {
  const list = await kube.list(['events', '-n', namespace, '--field-selector', `involvedObject.kind=${kind},involvedObject.name=${name}`]);
  return list.map((e) => ({ reason: String(e.reason), message: String(e.message), type: String(e.type) }));
}

/** The volume's member files (llraid-<id>-<slot>.img) on the node's disks. */
async function memberFiles(volumeId: string): Promise<string[]> {
  return (await volumeFiles(volumeId)).filter((f) => f.endsWith('.img'));
}

/** Every file of the volume on the node's disks: members and what sits beside them. */
async function volumeFiles(volumeId: string): Promise<string[]> {
  const out: string[] = [];
  for (const d of disks?.paths ?? []) {
    for (const f of await readdir(d)) if (f.includes(volumeId)) out.push(join(d, f));
  }
  return out;
}

before(async () => {
  if (!env) return;
  kube = new KubeTools(env);
  // This machine has no nbd module: volumes reach the kernel through nbdfuse and a loop device.
  await kube.helm(['install', RELEASE, chartDir(env), '--namespace', NAMESPACE, '--create-namespace', '--set', 'attach=fuse',
    '--set', 'sidecars.provisioner.capacityPollInterval=5s', '--set', 'status.minIntervalSeconds=1']);
  raid1Class = (await storageClassForLevel(kube, 1)).metadata.name;
  await kube.kubectl(['create', 'namespace', NS]);

  node = new KubeletStandIn(env, NODE);
  await node.registerNode();
  // The chart's default pool: two disks; each gets a real filesystem of its own at its host path.
  const values = JSON.parse(await kube.helm(['get', 'values', RELEASE, '-n', NAMESPACE, '--all', '-o', 'json'])) as {
    diskPool: { disks: { name: string; path: string }[] };
  };
  disks = await NodeDisks.create(values.diskPool.disks.map((d) => node.hostPath(d.path)), DISK_BYTES);
  await node.runDaemonSetPod(NAMESPACE, `${RELEASE}-engines`);
  await node.runDaemonSetPod(NAMESPACE, `${RELEASE}-node`, { env: { LLRAID_METRICS_ADDRESS: '127.0.0.1:0' } });
});

after(async () => {
  if (!env) return;
  await kube.run('kubectl', ['delete', 'namespace', NS, '--wait=false']);
  await node?.stop();
  await disks?.remove();
  await kube.run('helm', ['uninstall', RELEASE, '--namespace', NAMESPACE, '--wait']);
  await kube.run('kubectl', ['delete', 'namespace', NAMESPACE, '--wait=false']);
  await kube.run('kubectl', ['delete', 'node', NODE, '--wait=false']);
});

test('the harness registered the driver in a CSINode with its node id and topology key', { skip }, async () => {
  const csinode = await kube.get(['csinode', NODE]);
  const drivers = (csinode?.spec?.drivers ?? []) as { name: string; nodeID: string; topologyKeys: string[] }[];
  const d = drivers.find((x) => x.name === DRIVER);
  assert.ok(d, `expected driver ${DRIVER} in CSINode ${NODE}, found ${JSON.stringify(drivers)}`);
  assert.equal(d.nodeID, NODE);
  assert.deepEqual(d.topologyKeys, ['topology.llraid.io/node']);
});

test('a pod\'s raid1 PVC is provisioned on the node the scheduler picked and Bound by the real controllers', { skip, timeout: 180_000 }, async () => {
  await kube.kubectl(['apply', '-f', '-'], claimAndPod({ name: 'data', storageClassName: raid1Class, size: '128Mi' }));
  const pvc = await waitFor('PVC data to be Bound', 150_000, async () => {
    const c = await kube.get(['pvc', '-n', NS, 'data']);
    return c?.status?.phase === 'Bound' ? c : undefined;
  }, async () => `${await kube.kubectl(['describe', 'pvc', '-n', NS, 'data'])}\n${await node.logTail('csi-provisioner', 15)}`);

  // The scheduler chose the node (late binding), the provisioner on that node created the volume.
  assert.equal(pvc.metadata.annotations?.['volume.kubernetes.io/selected-node'], NODE);
  pvName = String(pvc.spec?.volumeName);
  const pv = await kube.get(['pv', pvName]);
  assert.ok(pv, `expected PV ${pvName}, found none`);
  const csi = pv.spec?.csi as { driver: string; volumeHandle: string };
  assert.equal(csi.driver, DRIVER);
  volumeHandle = csi.volumeHandle;
  assert.equal(pv.metadata.annotations?.['pv.kubernetes.io/provisioned-by'], DRIVER);
  assert.equal(pv.spec?.persistentVolumeReclaimPolicy, 'Delete');
  const terms = (pv.spec?.nodeAffinity as { required: { nodeSelectorTerms: { matchExpressions: { key: string; values: string[] }[] }[] } })
    .required.nodeSelectorTerms;
  assert.deepEqual(terms.flatMap((t) => t.matchExpressions.map((e) => `${e.key}=${e.values.join('|')}`)), [`topology.llraid.io/node=${NODE}`]);
  assert.ok(Number.parseInt(String((pv.spec?.capacity as Record<string, string>).storage)) >= 128, 'expected at least 128Mi');

  // The PV's members are real files on the node's disks, one per disk.
  const files = await memberFiles(volumeHandle);
  assert.equal(files.length, 2, `expected 2 member files of ${volumeHandle}, found ${files.join(', ')}`);
  assert.notEqual(files[0]?.split('/').slice(0, -1).join('/'), files[1]?.split('/').slice(0, -1).join('/'), 'members must be on distinct disks');

  // With its volume bound the scheduler binds the pod to the node.
  await waitFor('pod data-user to be bound to the node', 60_000, async () => {
    const p = await kube.get(['pod', '-n', NS, 'data-user']);
    return p?.spec?.nodeName === NODE ? true : undefined;
  });
});

test('CSIStorageCapacity for the raid1 class on this node matches the pool\'s usable capacity', { skip, timeout: 120_000 }, async () => {
  const sc = await storageClassForLevel(kube, 1);
  const want = async () => {
    const r = await node.csi.call<{ available_capacity: number; maximum_volume_size?: { value: number } | null }>('Controller', 'GetCapacity', {
      volume_capabilities: [{ mount: { fs_type: '', mount_flags: [] }, access_mode: { mode: 'SINGLE_NODE_WRITER' } }],
      parameters: sc.parameters ?? {},
      accessible_topology: { segments: { 'topology.llraid.io/node': NODE } },
    });
    return r;
  };
  const found = await waitFor('a CSIStorageCapacity equal to the driver\'s GetCapacity for the raid1 class', 90_000, async () => {
    const expected = await want();
    const caps = await kube.list(['csistoragecapacities', '-n', NAMESPACE]);
    const mine = caps.find((c) =>
      c.storageClassName === sc.metadata.name &&
      (c.nodeTopology as { matchLabels?: Record<string, string> } | undefined)?.matchLabels?.['topology.llraid.io/node'] === NODE);
    if (!mine) return undefined;
    const bytes = quantityBytes(String(mine.capacity));
    return bytes === expected.available_capacity ? { mine, expected } : undefined;
  }, async () => JSON.stringify(await kube.list(['csistoragecapacities', '-n', NAMESPACE])));
  // raid1 over two 512 MiB disks holding one 128 MiB volume: less than one disk, more than nothing.
  assert.ok(found.expected.available_capacity > 0 && found.expected.available_capacity < DISK_BYTES,
    `expected raid1 capacity between 0 and one disk (${DISK_BYTES}), found ${found.expected.available_capacity}`);
  const max = found.mine.maximumVolumeSize;
  if (found.expected.maximum_volume_size) assert.equal(quantityBytes(String(max)), found.expected.maximum_volume_size.value);
});

test('a PVC larger than any node can hold stays Pending and its pod says why', { skip, timeout: 120_000 }, async () => {
  await kube.kubectl(['apply', '-f', '-'], claimAndPod({ name: 'huge', storageClassName: raid1Class, size: '4Gi' }));
  const why = await waitFor('a FailedScheduling event for pod huge-user naming storage capacity', 90_000, async () => {
    const evs = await events(NS, 'Pod', 'huge-user');
    return evs.find((e) => e.reason === 'FailedScheduling' && /enough free storage/.test(e.message));
  }, async () => JSON.stringify(await events(NS, 'Pod', 'huge-user')));
  assert.match(why.message, /0\/\d+ nodes are available/);
  const pvc = await kube.get(['pvc', '-n', NS, 'huge']);
  assert.equal(pvc?.status?.phase, 'Pending');
  assert.equal(pvc?.spec?.volumeName, undefined);
  const describe = await kube.kubectl(['describe', 'pod', '-n', NS, 'huge-user']);
  assert.match(describe, /FailedScheduling.*did not have enough free storage/s);
  await kube.kubectl(['delete', 'pod', '-n', NS, 'huge-user', '--wait=false']);
  await kube.kubectl(['delete', 'pvc', '-n', NS, 'huge', '--wait=false']);
});

test('raising the PVC request makes csi-resizer expand the volume and the array grows', { skip, timeout: 180_000 }, async () => {
  assert.ok(pvName, 'needs the volume of the provisioning test');
  const before = await node.csi.call<{ volume: { capacity_bytes: number } }>('Controller', 'ControllerGetVolume', { volume_id: volumeHandle });
  // Big enough that the bitmap's 32 MiB infect blocks (512 chunks of 64 KiB) leave most of the
  // array unmarked by what mkfs and a payload write later: the resync test below counts on it.
  await kube.kubectl(['patch', 'pvc', '-n', NS, 'data', '--type=merge', '-p', JSON.stringify({ spec: { resources: { requests: { storage: '384Mi' } } } })]);
  await waitFor('PV capacity to become 384Mi', 150_000, async () => {
    const pv = await kube.get(['pv', pvName]);
    return quantityBytes(String((pv?.spec?.capacity as Record<string, string>).storage)) >= 384 * MiB ? true : undefined;
  }, async () => `${await kube.kubectl(['describe', 'pvc', '-n', NS, 'data'])}\n${await node.logTail('csi-resizer', 15)}`);
  const grown = await node.csi.call<{ volume: { capacity_bytes: number } }>('Controller', 'ControllerGetVolume', { volume_id: volumeHandle });
  assert.ok(grown.volume.capacity_bytes >= 384 * MiB,
    `expected the array to hold at least ${384 * MiB} bytes, found ${grown.volume.capacity_bytes} (was ${before.volume.capacity_bytes})`);
  const evs = await events(NS, 'PersistentVolumeClaim', 'data');
  assert.ok(evs.some((e) => e.reason === 'Resizing'), `expected a Resizing event from csi-resizer, found ${evs.map((e) => e.reason).join(', ')}`);
});

test('kubectl describe pvc shows the provisioning story', { skip }, async () => {
  const text = await kube.kubectl(['describe', 'pvc', '-n', NS, 'data']);
  assert.match(text, /Status:\s+Bound/);
  assert.match(text, new RegExp(`Volume:\\s+${pvName}`));
  assert.match(text, new RegExp(`WaitForFirstConsumer\\s+.*waiting for first consumer to be created before binding`));
  assert.match(text, new RegExp(`Provisioning\\s+.*External provisioner is provisioning volume for claim "${NS}/data"`));
  assert.match(text, new RegExp(`ProvisioningSucceeded\\s+.*Successfully provisioned volume ${pvName}`));
  assert.match(text, new RegExp(`Used By:\\s+data-user`));
});

test('kubectl get and describe raidvolume show level, members, bitmap counts and state', { skip, timeout: 60_000 }, async () => {
  assert.ok(volumeHandle, 'needs the volume of the provisioning test');
  const rv = await waitFor<KubeObject>(`RaidVolume ${volumeHandle}`, 30_000, async () => kube.get(['raidvolume', volumeHandle]),
    async () => node.logTail('llraid', 15));
  assert.equal(rv.spec?.level, 'raid1');
  assert.equal(rv.spec?.persistentVolume, pvName);
  assert.deepEqual(rv.spec?.claim, { namespace: NS, name: 'data' });
  const table = await kube.kubectl(['get', 'raidvolumes']);
  const row = table.split('\n').find((l) => l.startsWith(volumeHandle));
  assert.ok(row, `expected a row for ${volumeHandle} in:\n${table}`);
  assert.match(row, new RegExp(`^${volumeHandle}\\s+${NODE}\\s+raid1\\s+\\S+.*\\s2/2\\s+(clean|active)`));
  const text = await kube.kubectl(['describe', 'raidvolume', volumeHandle]);
  assert.match(text, /Level:\s+raid1/);
  assert.match(text, /Members:/);
  for (const f of await memberFiles(volumeHandle)) assert.ok(text.includes(f), `expected member ${f} in describe output:\n${text}`);
  assert.match(text, /Bitmap:[\s\S]*Clean:\s+\d+/);
  assert.match(text, /State:\s+(clean|active)/);
  assert.match(text, /Members In Sync:\s+2\/2/);
});

test('after the engine is killed, restaging resyncs only what the bitmap marked, and the PVC and RaidVolume say so', { skip, timeout: 240_000 }, async () => {
  assert.ok(volumeHandle, 'needs the volume of the provisioning test');
  const pv = await kube.get(['pv', pvName]);
  const attributes = ((pv?.spec?.csi as { volumeAttributes?: Record<string, string> }).volumeAttributes) ?? {};
  // kubelet: the staging path of a CSI volume under the plugin dir, on the node's filesystem.
  const staging = node.hostPath(`/var/lib/kubelet/plugins/kubernetes.io/csi/${DRIVER}/${pvName}/globalmount`);
  const stage = {
    volume_id: volumeHandle,
    staging_target_path: staging,
    volume_capability: { mount: { fs_type: 'ext4', mount_flags: [] }, access_mode: { mode: 'SINGLE_NODE_WRITER' } },
    volume_context: attributes,
    publish_context: {},
    secrets: {},
  };
  await node.csi.call('Node', 'NodeStageVolume', stage, 180_000);
  try {
    await killAndRestage();
  } finally {
    // Unstaged even when an assertion failed, so the deletion test after this one still runs.
    await node.csi.call('Node', 'NodeUnstageVolume', { volume_id: volumeHandle, staging_target_path: staging }, 120_000);
  }

  async function killAndRestage(): Promise<void> {
    const data = randomBytes(4 * MiB);
    await writeFile(join(staging, 'payload'), data, { flush: true });
    await exec('sync', ['-f', join(staging, 'payload')]);

    const engine = await enginePid(volumeHandle);
    assert.ok(engine, `expected a running engine for ${volumeHandle}`);
    process.kill(engine, 'SIGKILL');
    await node.csi.call('Node', 'NodeStageVolume', stage, 180_000);

    const rv = await waitFor('the RaidVolume to report a finished resync', 120_000, async () => {
      const r = await kube.get(['raidvolume', volumeHandle]);
      const last = r?.status?.lastSync as { bytes: number; totalBytes: number } | undefined;
      return last && r?.status?.sync === undefined ? { r, last } : undefined;
    }, async () => `${JSON.stringify((await kube.get(['raidvolume', volumeHandle]))?.status)}\n${await node.logTail('llraid', 15)}`);
    // Bitmap-guided: something was resynced, and far less than the whole array.
    assert.ok(rv.last.bytes > 0 && rv.last.bytes < rv.last.totalBytes / 2,
      `expected a bitmap-guided resync (0 < bytes < half of ${rv.last.totalBytes}), found ${rv.last.bytes}`);
    assert.equal(await readFile(join(staging, 'payload')).then((b) => b.equals(data)), true, 'the data written before the kill reads back');
    process.stdout.write(`after the kill: resynced ${rv.last.bytes} of ${rv.last.totalBytes} bytes\n`);

    const describeRv = await kube.kubectl(['describe', 'raidvolume', volumeHandle]);
    process.stdout.write(`kubectl describe raidvolume ${volumeHandle}:\n${describeRv}\n`);
    assert.match(describeRv, /Last Sync:[\s\S]*Bytes:\s+\d+[\s\S]*Total Bytes:\s+\d+/);
    const describePvc = await waitFor('ResyncStarted and ResyncCompleted events on the PVC', 30_000, async () => {
      const t = await kube.kubectl(['describe', 'pvc', '-n', NS, 'data']);
      return /ResyncStarted/.test(t) && /ResyncCompleted/.test(t) ? t : undefined;
    }, async () => kube.kubectl(['describe', 'pvc', '-n', NS, 'data']));
    assert.match(describePvc, /ResyncStarted\s+.*marked by the bitmap/);
    assert.match(describePvc, /ResyncCompleted\s+.*resynced/);
  }
});

test('deleting the PVC deletes the PV, the volume and its member files', { skip, timeout: 180_000 }, async () => {
  assert.ok(pvName, 'needs the volume of the provisioning test');
  assert.equal((await memberFiles(volumeHandle)).length, 2);
  // The pod goes first (the stand-in confirms its deletion as the kubelet would), then the claim.
  await kube.kubectl(['delete', 'pod', '-n', NS, 'data-user', '--wait=false']);
  await waitFor('pod data-user to be gone', 60_000, async () => ((await kube.get(['pod', '-n', NS, 'data-user'])) ? undefined : true));
  await kube.kubectl(['delete', 'pvc', '-n', NS, 'data', '--wait=false']);
  await waitFor(`PV ${pvName} to be deleted`, 120_000, async () => ((await kube.get(['pv', pvName])) ? undefined : true),
    async () => `${JSON.stringify(await kube.get(['pv', pvName]))}\n${await node.logTail('csi-provisioner', 15)}`);
  assert.deepEqual(await volumeFiles(volumeHandle), [], 'nothing of the volume is left on the disks');
  await assert.rejects(node.csi.call('Controller', 'ControllerGetVolume', { volume_id: volumeHandle }), /NOT_FOUND|not exist/i);
});

/** The pid of the `llraid serve` engine process serving `volumeId`, found by its command line. */
async function enginePid(volumeId: string): Promise<number | undefined> {
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const argv = (await readFile(`/proc/${name}/cmdline`, 'utf8').catch(() => '')).split('\0');
    const i = argv.indexOf('--export-name');
    if (argv.includes('serve') && i >= 0 && argv[i + 1] === volumeId) return Number(name);
  }
  return undefined;
}

/** Bytes of a Kubernetes quantity in the forms the API server writes ("123456", "64Mi", "1Gi", "500k"). */
function quantityBytes(q: string): number {
  const m = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?$/.exec(q);
  if (!m) throw new Error(`expected a Kubernetes quantity, found ${JSON.stringify(q)}`);
  const mult: Record<string, number> = { Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3, Ti: 1024 ** 4, k: 1e3, M: 1e6, G: 1e9, T: 1e12 };
  return Math.round(Number(m[1]) * (m[2] ? (mult[m[2]] ?? 1) : 1));
}

