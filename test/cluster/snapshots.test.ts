// Issue 15, item 4, against the real control plane, the real snapshot-controller and the real
// kubernetes-csi sidecars (csi-snapshotter per node, csi-snapshot-metadata) with `llraid csi`:
// a VolumeSnapshot of a block PVC holding known bytes becomes ReadyToUse, a PVC restored from it
// and a clone PVC hold the same bytes (sha256 through the stand-in's block publish), and the
// upstream example client snapshot-metadata-lister lists, through the sidecar, the allocated
// blocks of snapshot 1 and the blocks changed between 1 and 2 after 1% of the volume was
// rewritten: a full backup from the first list plus an incremental one from the delta restore
// to snapshot 2's bytes.
//
// It needs the control plane started with LLRAID_CLUSTER_SNAPSHOTS=1 (snapshot CRDs,
// snapshot-controller; control-plane.sh), which makes every chart install render the snapshot
// sidecars: test-cluster.sh runs it on a control plane of its own, after the other files.
// Without it the setup fails, it does not skip.
// The tests run in order on the same volumes.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { copyFile, mkdir, readdir } from 'node:fs/promises';
import { status } from '@grpc/grpc-js';
import { createServer } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { join } from 'node:path';
import { chartDir, DRIVER, NAMESPACE, RELEASE, storageClassForLevel } from './chart.js';
import { clusterEnv, SKIP_REASON } from './cluster-env.js';
import { copyRanges, parseListerJson, sha256Prefix, writeAt, type ListedBlocks } from './block-backup.js';
import { KubeTools, waitFor, type KubeObject } from './kube-tools.js';
import { KubeletStandIn } from './kubelet-stand-in.js';
import { NodeDisks } from './node-disks.js';

const env = clusterEnv();
const skip = env ? false : SKIP_REASON;
const NODE = 'node-snap';
const NS = 'snapshots';
const MiB = 1024 * 1024;
// XFS (reflink: llraid's snapshots share the members' blocks) wants at least 300 MiB.
const DISK_BYTES = 512 * MiB;
const VOLUME = '64Mi';
const SNAPSHOT_CLASS = RELEASE; // the chart's VolumeSnapshotClass: the release's full name
const BACKUP_SA = 'backup';

let kube: KubeTools;
let node: KubeletStandIn;
let disks: NodeDisks | undefined;
let raid1Class = '';
let metadataPort = 0;
let work = '';

interface Bound {
  pvc: string;
  pv: string;
  handle: string;
  /** The volume's size in bytes (the PV's capacity as the driver reported it). */
  bytes: number;
}

/** Volumes by PVC name, filled in as the tests bind them. */
const bound = new Map<string, Bound>();
/** Block publishes by PVC name: the device file the stand-in published. */
const published = new Map<string, { device: string; unpublish: () => Promise<void> }>();
/** sha256 of the source volume at each snapshot. */
const sums = new Map<string, string>();
/** The full backup image of snapshot 1 (its allocated blocks). */
let fullBackup = '';

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => (a && typeof a === 'object' ? resolve(a.port) : reject(new Error('expected a TCP address'))));
    });
  });
}

/** A block-mode PVC of the raid1 class (optionally from a data source) and a pod that uses it. */
function blockClaimAndPod(name: string, dataSource?: { kind: 'VolumeSnapshot' | 'PersistentVolumeClaim'; name: string }): string {
  const pvc = {
    apiVersion: 'v1',
    kind: 'PersistentVolumeClaim',
    metadata: { name, namespace: NS },
    spec: {
      accessModes: ['ReadWriteOnce'],
      volumeMode: 'Block',
      storageClassName: raid1Class,
      resources: { requests: { storage: VOLUME } },
      ...(dataSource ? { dataSource: { ...dataSource, ...(dataSource.kind === 'VolumeSnapshot' ? { apiGroup: 'snapshot.storage.k8s.io' } : {}) } } : {}),
    },
  };
  const pod = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: `${name}-user`, namespace: NS },
    spec: {
      containers: [{ name: 'app', image: 'registry.invalid/app:0', volumeDevices: [{ name: 'data', devicePath: '/dev/data' }] }],
      volumes: [{ name: 'data', persistentVolumeClaim: { claimName: name } }],
    },
  };
  return JSON.stringify({ apiVersion: 'v1', kind: 'List', items: [pvc, pod] });
}

async function waitBound(name: string, timeoutMs = 180_000): Promise<Bound> {
  const pvc = await waitFor(`PVC ${name} to be Bound`, timeoutMs, async () => {
    const c = await kube.get(['pvc', '-n', NS, name]);
    return c?.status?.phase === 'Bound' ? c : undefined;
  }, async () => `${await kube.kubectl(['describe', 'pvc', '-n', NS, name])}\n${await node.logTail('csi-provisioner', 15)}\n${await node.logTail('llraid', 15)}`);
  const pvName = String(pvc.spec?.volumeName);
  const pv = await kube.get(['pv', pvName]);
  assert.ok(pv, `expected PV ${pvName}, found none`);
  const handle = (pv.spec?.csi as { volumeHandle: string }).volumeHandle;
  // As a CO would: UNAVAILABLE (a member file that did not read) is retried, and said.
  const vol = await waitFor(`ControllerGetVolume ${handle} (PVC ${name}) to answer`, 30_000, async () => {
    try {
      return await node.csi.call<{ volume: { capacity_bytes: number } }>('Controller', 'ControllerGetVolume', { volume_id: handle });
    } catch (err) {
      if ((err as { code?: number }).code !== status.UNAVAILABLE) throw new Error(`${(err as Error).message}\n${await poolState()}`, { cause: err });
      process.stdout.write(`ControllerGetVolume ${handle}: ${(err as Error).message} (retried)\n`);
      return undefined;
    }
  }, poolState);
  const b = { pvc: name, pv: pvName, handle, bytes: Number(vol.volume.capacity_bytes) };
  bound.set(name, b);
  return b;
}

/** What a failure on a volume should show: the pool's files and the plugin's last words. */
async function poolState(): Promise<string> {
  const listing = await Promise.all((disks?.paths ?? []).map(async (d) => `${d}: ${(await readdir(d).catch((e: Error) => [e.message])).join(' ')}`));
  return `${listing.join('\n')}\n${await node.logTail('llraid', 30)}`;
}

/**
 * kubelet: stages and publishes a bound block PVC on the node (NodeStageVolume and
 * NodePublishVolume with a block capability, at the paths a kubelet uses) and returns the device
 * file the plugin bind-mounted there.
 */
async function publishBlock(name: string): Promise<string> {
  const have = published.get(name);
  if (have) return have.device;
  const b = bound.get(name) ?? await waitBound(name);
  const pv = await kube.get(['pv', b.pv]);
  const attributes = ((pv?.spec?.csi as { volumeAttributes?: Record<string, string> }).volumeAttributes) ?? {};
  const capability = { block: {}, access_mode: { mode: 'SINGLE_NODE_WRITER' } };
  const staging = node.hostPath(`/var/lib/kubelet/plugins/kubernetes.io/csi/volumeDevices/staging/${b.pv}`);
  const target = node.hostPath(`/var/lib/kubelet/plugins/kubernetes.io/csi/volumeDevices/publish/${b.pv}/${name}`);
  await mkdir(staging, { recursive: true });
  await node.csi.call('Node', 'NodeStageVolume', {
    volume_id: b.handle, staging_target_path: staging, volume_capability: capability, volume_context: attributes, publish_context: {}, secrets: {},
  }, 180_000);
  await node.csi.call('Node', 'NodePublishVolume', {
    volume_id: b.handle, staging_target_path: staging, target_path: target, volume_capability: capability, volume_context: attributes,
    publish_context: {}, secrets: {}, readonly: false,
  }, 120_000);
  published.set(name, {
    device: target,
    unpublish: async () => {
      await node.csi.call('Node', 'NodeUnpublishVolume', { volume_id: b.handle, target_path: target }, 120_000);
      await node.csi.call('Node', 'NodeUnstageVolume', { volume_id: b.handle, staging_target_path: staging }, 120_000);
    },
  });
  return target;
}

/** Creates VolumeSnapshot `name` of PVC `source` and waits for ReadyToUse. */
async function snapshot(name: string, source: string): Promise<KubeObject> {
  await kube.kubectl(['apply', '-f', '-'], JSON.stringify({
    apiVersion: 'snapshot.storage.k8s.io/v1',
    kind: 'VolumeSnapshot',
    metadata: { name, namespace: NS },
    spec: { volumeSnapshotClassName: SNAPSHOT_CLASS, source: { persistentVolumeClaimName: source } },
  }));
  return waitFor(`VolumeSnapshot ${name} to be ReadyToUse`, 180_000, async () => {
    const s = await kube.get(['volumesnapshot', '-n', NS, name]);
    return s?.status?.readyToUse === true ? s : undefined;
  }, async () => [
    await kube.kubectl(['describe', 'volumesnapshot', '-n', NS, name]),
    await node.logTail('csi-snapshotter', 20),
    await node.logTail('llraid', 15),
  ].join('\n'));
}

/** Runs the upstream example client against the SnapshotMetadataService, as ServiceAccount `backup`. */
async function lister(snapshotName: string, previous?: string): Promise<ListedBlocks> {
  const args = ['-n', NS, '-s', snapshotName, ...(previous ? ['-p', previous] : []), '-o', 'json',
    '-kubeconfig', env!.kubeconfig, '-service-account', BACKUP_SA, '-service-account-namespace', NS];
  const r = await kube.run('snapshot-metadata-lister', args);
  if (r.code !== 0) {
    throw new Error(`snapshot-metadata-lister ${args.join(' ')}: expected exit 0, found ${r.code}: ${r.stderr.trim()}\n${await node.logTail('csi-snapshot-metadata', 20)}`);
  }
  return parseListerJson(r.stdout);
}

before(async () => {
  if (!env) return;
  kube = new KubeTools(env);
  const crds = await kube.run('kubectl', ['get', 'crd', 'volumesnapshots.snapshot.storage.k8s.io', 'volumesnapshotcontents.snapshot.storage.k8s.io',
    'volumesnapshotclasses.snapshot.storage.k8s.io', 'snapshotmetadataservices.cbt.storage.k8s.io']);
  if (crds.code !== 0) {
    throw new Error(`expected the snapshot CRDs (start the control plane with LLRAID_CLUSTER_SNAPSHOTS=1, scripts/k8s/control-plane.sh), found: ${crds.stderr.trim()}`);
  }
  work = join(env.stateDir, 'snapshots-test');
  await mkdir(work, { recursive: true });
  metadataPort = await freePort();
  // The stand-in runs the node at 127.0.0.1 with no Service routing: clients dial the node's
  // sidecar directly, so the SnapshotMetadataService names that address and the certificate it.
  await kube.helm(['install', RELEASE, chartDir(env), '--namespace', NAMESPACE, '--create-namespace', '--set', 'attach=fuse',
    '--set', 'sidecars.provisioner.capacityPollInterval=5s', '--set', 'status.minIntervalSeconds=1',
    '--set', 'snapshots.enabled=true', '--set', 'snapshots.metadata.enabled=true',
    '--set', `snapshots.metadata.port=${metadataPort}`, '--set', `snapshots.metadata.address=127.0.0.1:${metadataPort}`,
    '--set', 'snapshots.metadata.tls.extraIPs={127.0.0.1}']);
  raid1Class = (await storageClassForLevel(kube, 1)).metadata.name;
  await kube.kubectl(['create', 'namespace', NS]);
  // The backup application's identity: its token is what the sidecar authenticates and authorizes.
  await kube.kubectl(['create', 'serviceaccount', '-n', NS, BACKUP_SA]);
  await kube.kubectl(['create', 'clusterrolebinding', `${NS}-${BACKUP_SA}`, `--clusterrole=${RELEASE}-snapshot-metadata-client`, `--serviceaccount=${NS}:${BACKUP_SA}`]);

  node = new KubeletStandIn(env, NODE);
  await node.registerNode();
  const values = JSON.parse(await kube.helm(['get', 'values', RELEASE, '-n', NAMESPACE, '--all', '-o', 'json'])) as {
    diskPool: { disks: { name: string; path: string }[] };
  };
  disks = await NodeDisks.create(values.diskPool.disks.map((d) => node.hostPath(d.path)), DISK_BYTES, 'xfs');
  await node.runDaemonSetPod(NAMESPACE, `${RELEASE}-engines`);
  await node.runDaemonSetPod(NAMESPACE, `${RELEASE}-node`, { env: { LLRAID_METRICS_ADDRESS: '127.0.0.1:0' } });
});

after(async () => {
  if (!env) return;
  for (const p of published.values()) await p.unpublish().catch(() => undefined);
  await kube.run('kubectl', ['delete', 'volumesnapshots', '-n', NS, '--all', '--wait=false']);
  await kube.run('kubectl', ['delete', 'namespace', NS, '--wait=false']);
  await kube.run('kubectl', ['delete', 'clusterrolebinding', `${NS}-${BACKUP_SA}`]);
  await node?.stop();
  await disks?.remove();
  await kube.run('helm', ['uninstall', RELEASE, '--namespace', NAMESPACE, '--wait']);
  await kube.run('kubectl', ['delete', 'namespace', NAMESPACE, '--wait=false']);
  await kube.run('kubectl', ['delete', 'node', NODE, '--wait=false']);
});

test('the cluster serves the snapshot APIs, the snapshot-controller is healthy, and the chart added the class, the sidecars and the SnapshotMetadataService', { skip, timeout: 120_000 }, async () => {
  for (const crd of ['volumesnapshots.snapshot.storage.k8s.io', 'snapshotmetadataservices.cbt.storage.k8s.io']) {
    const c = await kube.get(['crd', crd]);
    const established = (c?.status?.conditions as { type: string; status: string }[] | undefined)?.find((x) => x.type === 'Established');
    assert.equal(established?.status, 'True', `CRD ${crd} established`);
  }
  const metrics = process.env.SNAPSHOT_CONTROLLER_METRICS;
  assert.ok(metrics, 'expected SNAPSHOT_CONTROLLER_METRICS in the control plane env (control-plane.sh with LLRAID_CLUSTER_SNAPSHOTS=1)');
  const res = await fetch(metrics);
  assert.equal(res.status, 200, `snapshot-controller ${metrics}`);

  const cls = await kube.get(['volumesnapshotclass', SNAPSHOT_CLASS]);
  assert.deepEqual({ driver: cls?.driver, policy: cls?.deletionPolicy }, { driver: DRIVER, policy: 'Delete' });
  const sms = await kube.get(['snapshotmetadataservice', DRIVER]);
  const spec = sms?.spec as { address: string; audience: string; caCert: string } | undefined;
  assert.equal(spec?.address, `127.0.0.1:${metadataPort}`);

  // Both sidecars run beside the plugin: csi-snapshotter found the driver's snapshot capability
  // (it exits when the driver lacks it), the metadata sidecar serves TLS with the certificate the
  // SnapshotMetadataService's CA signed, for the address clients dial.
  await new Promise((r) => setTimeout(r, 5000));
  assert.ok(node.pid('csi-snapshotter'), `csi-snapshotter is running\n${await node.logTail('csi-snapshotter', 20)}`);
  assert.ok(node.pid('csi-snapshot-metadata'), `csi-snapshot-metadata is running\n${await node.logTail('csi-snapshot-metadata', 20)}`);
  const authorized = await waitFor(`a TLS handshake with the metadata sidecar at 127.0.0.1:${metadataPort}`, 30_000, () =>
    new Promise<boolean | undefined>((resolve) => {
      const s = tlsConnect({ host: '127.0.0.1', port: metadataPort, ca: Buffer.from(spec?.caCert ?? '', 'base64'), ALPNProtocols: ['h2'] });
      s.once('secureConnect', () => {
        resolve(s.authorized);
        s.destroy();
      });
      s.once('error', () => resolve(undefined));
    }), async () => node.logTail('csi-snapshot-metadata', 20));
  assert.equal(authorized, true, 'the sidecar certificate verifies against the SnapshotMetadataService caCert for 127.0.0.1');
});

test('a VolumeSnapshot of a block PVC with known data becomes ReadyToUse, and describe raidvolume lists it with its size and shared bytes', { skip, timeout: 420_000 }, async () => {
  await kube.kubectl(['apply', '-f', '-'], blockClaimAndPod('source'));
  const src = await waitBound('source');
  const device = await publishBlock('source');
  // Known bytes: the first 8 MiB and four scattered MiB; the rest is never written.
  const writes = [{ offset: 0, data: randomBytes(8 * MiB) }];
  for (const at of [13, 29, 41, 57]) writes.push({ offset: at * MiB, data: randomBytes(MiB) });
  await writeAt(device, writes);
  sums.set('snap-1', await sha256Prefix(device, src.bytes));

  const snap = await snapshot('snap-1', 'source');
  const content = await kube.get(['volumesnapshotcontent', String(snap.status?.boundVolumeSnapshotContentName)]);
  const handle = String(content?.status?.snapshotHandle ?? '');
  assert.ok(handle, `expected a snapshotHandle on ${String(snap.status?.boundVolumeSnapshotContentName)}`);
  assert.equal(content?.spec?.driver, DRIVER);
  assert.ok(Number(content?.status?.restoreSize) >= src.bytes, `restoreSize ${String(content?.status?.restoreSize)} ≥ ${src.bytes}`);

  const describe = await waitFor(`describe raidvolume ${src.handle} to list ${handle}`, 60_000, async () => {
    const t = await kube.kubectl(['describe', 'raidvolume', src.handle]);
    return t.includes(handle) ? t : undefined;
  }, async () => kube.kubectl(['describe', 'raidvolume', src.handle]));
  process.stdout.write(`kubectl describe raidvolume ${src.handle}:\n${describe}\n`);
  assert.match(describe, new RegExp(`Snapshots:[\\s\\S]*Id:\\s+${handle}[\\s\\S]*Shared Bytes:\\s+\\d+[\\s\\S]*Size Bytes:\\s+\\d+`));
});

test('a PVC restored from the snapshot binds and holds the same bytes', { skip, timeout: 300_000 }, async () => {
  const want = sums.get('snap-1');
  assert.ok(want, 'needs the snapshot of the test before');
  await kube.kubectl(['apply', '-f', '-'], blockClaimAndPod('restored-1', { kind: 'VolumeSnapshot', name: 'snap-1' }));
  const b = await waitBound('restored-1');
  const src = bound.get('source')!;
  assert.ok(b.bytes >= src.bytes, `restored volume ${b.bytes} bytes ≥ source ${src.bytes}`);
  assert.equal(await sha256Prefix(await publishBlock('restored-1'), src.bytes), want, 'sha256 of the restored volume');
});

test('a clone PVC (dataSource PVC) binds and holds the same bytes', { skip, timeout: 300_000 }, async () => {
  const want = sums.get('snap-1');
  assert.ok(want, 'needs the source volume of the tests before');
  // The source is unchanged since snap-1: the clone must equal it.
  await kube.kubectl(['apply', '-f', '-'], blockClaimAndPod('clone', { kind: 'PersistentVolumeClaim', name: 'source' }));
  await waitBound('clone');
  const src = bound.get('source')!;
  assert.equal(await sha256Prefix(await publishBlock('clone'), src.bytes), want, 'sha256 of the clone');
  assert.equal(await sha256Prefix(await publishBlock('source'), src.bytes), want, 'the source is unchanged by the clone');
});

test('snapshot-metadata-lister lists the allocated blocks of snapshot 1 through the sidecar; a full backup from them has its bytes', { skip, timeout: 180_000 }, async () => {
  const src = bound.get('source');
  assert.ok(src && sums.get('snap-1'), 'needs the snapshot of the tests before');
  const allocated = await lister('snap-1');
  process.stdout.write(`allocated blocks of snap-1: ${allocated.ranges.length} ranges, ${allocated.bytes} of ${src.bytes} bytes\n`);
  assert.ok(allocated.volumeCapacityBytes >= src.bytes, `volume_capacity_bytes ${allocated.volumeCapacityBytes}`);
  // Everything written is allocated; nothing more than the volume.
  assert.ok(allocated.bytes >= 12 * MiB && allocated.bytes <= src.bytes, `allocated ${allocated.bytes} bytes: at least the 12 MiB written`);
  fullBackup = join(work, 'backup-full.img');
  await copyRanges(await publishBlock('restored-1'), fullBackup, allocated.ranges, src.bytes);
  assert.equal(await sha256Prefix(fullBackup, src.bytes), sums.get('snap-1'), 'sha256 of the full backup = snapshot 1');
});

test('after 1% of the volume is rewritten, the delta 1→2 makes an incremental backup that restores to snapshot 2\'s bytes', { skip, timeout: 480_000 }, async () => {
  const src = bound.get('source');
  assert.ok(src && fullBackup, 'needs the full backup of the test before');
  // 1% of the volume, in 64 KiB pieces spread over it (one in the never-written region).
  const piece = 64 * 1024;
  const pieces = Math.max(1, Math.round((src.bytes * 0.01) / piece));
  const stride = Math.floor(src.bytes / pieces / piece) * piece;
  const writes = Array.from({ length: pieces }, (_, i) => ({ offset: i * stride + (i % 3) * 4096, data: randomBytes(piece) }));
  await writeAt(await publishBlock('source'), writes);
  sums.set('snap-2', await sha256Prefix(await publishBlock('source'), src.bytes));
  assert.notEqual(sums.get('snap-2'), sums.get('snap-1'));
  await snapshot('snap-2', 'source');

  const delta = await lister('snap-2', 'snap-1');
  const rewritten = pieces * piece;
  process.stdout.write(`delta snap-1→snap-2: ${delta.ranges.length} ranges, ${delta.bytes} bytes for ${rewritten} rewritten (${(delta.bytes / rewritten).toFixed(2)}×), volume ${src.bytes}\n`);
  for (const w of writes) {
    assert.ok(coveredBy(delta, w.offset, w.data.length), `the delta covers the write at ${w.offset}`);
  }
  assert.ok(delta.bytes < src.bytes / 4, `the delta (${delta.bytes} bytes) is far less than the volume (${src.bytes})`);

  // Restore: a copy of the full backup, with the changed ranges read from snapshot 2.
  await kube.kubectl(['apply', '-f', '-'], blockClaimAndPod('restored-2', { kind: 'VolumeSnapshot', name: 'snap-2' }));
  await waitBound('restored-2');
  const incremental = join(work, 'backup-incremental.img');
  await copyFile(fullBackup, incremental);
  await copyRanges(await publishBlock('restored-2'), incremental, delta.ranges, src.bytes);
  assert.equal(await sha256Prefix(incremental, src.bytes), sums.get('snap-2'), 'sha256 of full + incremental = snapshot 2');
  assert.equal(await sha256Prefix(await publishBlock('restored-2'), src.bytes), sums.get('snap-2'), 'snapshot 2 restored holds the source\'s bytes');
});

test('deleting the VolumeSnapshots deletes their contents (deletionPolicy Delete)', { skip, timeout: 180_000 }, async () => {
  const contents = (await kube.list(['volumesnapshots', '-n', NS])).map((s) => String(s.status?.boundVolumeSnapshotContentName));
  assert.ok(contents.length >= 1, 'needs the snapshots of the tests before');
  await kube.kubectl(['delete', 'volumesnapshots', '-n', NS, '--all', '--wait=false']);
  for (const c of contents) {
    await waitFor(`VolumeSnapshotContent ${c} to be deleted`, 120_000, async () => ((await kube.get(['volumesnapshotcontent', c])) ? undefined : true),
      async () => `${JSON.stringify((await kube.get(['volumesnapshotcontent', c]))?.status)}\n${await node.logTail('csi-snapshotter', 15)}`);
  }
});

/** Whether the delta's ranges together cover [offset, offset + length) (adjacent ranges may split a write). */
function coveredBy(delta: ListedBlocks, offset: number, length: number): boolean {
  let at = offset;
  for (const r of delta.ranges) {
    if (r.offset > at) break;
    if (r.offset + r.length > at) at = r.offset + r.length;
    if (at >= offset + length) return true;
  }
  return at >= offset + length;
}
