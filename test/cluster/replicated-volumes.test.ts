// Issue 19's scenarios on three nodes in network namespaces (three-nodes.ts), against the CSI flow
// of /work/issue19-plan.md ("NodeStage of a replicated volume"): a raid1 volume with replicas 2
// has one member on each of two nodes A and B; Stage/Publish are driven through each node's CSI
// socket as the kubelet would; the data is checked by checksums and by an application whose
// acknowledged writes are logged (ack-writer.ts).
//
//   clean move A→B              0 bytes resynced, checksums equal, owner B with the next epoch
//   kill -9 of A mid-write      B takes over after A's node Lease expired; no acknowledged write
//                               lost; A back: what is resynced ≤ the chunks in flight
//   A partitioned mid-write     A stops acknowledging within the lease time; B takes over; after
//                               heal, `llraid check` finds 0 mismatches
//   A back after an absence     1% rewritten on B meanwhile: only that is recovered
//   two nodes race to stage     exactly one wins, the other is ABORTED naming the owner
//
// Each scenario provisions its own volume (a PVC with a Pod pinned to node-a: CreateVolume runs
// there, so A = node-a) and leaves it unstaged.
//
// LLRAID_CAPTURE_DESCRIBE=DIR: the kill -9 scenario also writes what an operator would see at
// each step (`kubectl get rv`, `kubectl describe raidvolume`, `kubectl describe pvc`) to
// DIR/crash-<n>-<moment>.txt: A's member stale after the take-over, recovering when
// A is back (if a status write catches it), in sync at the end (docs/kubernetes.md quotes them).

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { startAckWriter, verifyAcked, deviceHash, writeRegion, readAcks, RECORD, type Ack } from './ack-writer.js';
import { DRIVER } from './chart.js';
import { clusterEnv, SKIP_REASON } from './cluster-env.js';
import { waitFor, type KubeObject } from './kube-tools.js';
import type { KubeletStandIn } from './kubelet-stand-in.js';
import { NODES, ThreeNodes, type NodeName } from './three-nodes.js';

const exec = promisify(execFile);
const env = clusterEnv();
const skip = env ? false : SKIP_REASON;
const NS = 'replicated';
const CLASS = 'llraid-replicated';
/**
 * The same with recovery held to 4 MiB/s (the StorageClass's md min/max): the absence scenario's
 * recovery then lasts seconds, long enough for the RaidVolume to show a member Recovering.
 */
const THROTTLED_CLASS = 'llraid-replicated-throttled';
const THROTTLED_KIB = 4096;
const MiB = 1024 * 1024;
/** The node Lease's duration (chart nodeLease.durationSeconds): how long a take-over waits. */
const LEASE_SECONDS = 10;
/**
 * llbitmap marks a chunk's whole io_size block of state on an unclean stop (infect): 512 chunks.
 * A resync after a crash copies whole blocks of 512 chunks around the chunks in flight.
 */
const INFECT_CHUNKS = 512;

let cluster: ThreeNodes;

before(async () => {
  if (!env) return;
  cluster = await ThreeNodes.start(env, {
    helmSet: [`nodeLease.durationSeconds=${LEASE_SECONDS}`, 'bitmap.daemonSleepSeconds=1'],
    // Sparse images: room for a volume big enough that 1% of it is less than a resync block.
    diskBytes: 4096 * MiB,
  });
  await cluster.kube.kubectl(['create', 'namespace', NS]);
  const parameters = { level: '1', members: '2', replicas: '2', bitmap: 'llbitmap', fsType: 'ext4' };
  const throttled = { ...parameters, recoverySpeedMinKiB: String(THROTTLED_KIB), recoverySpeedMaxKiB: String(THROTTLED_KIB) };
  for (const [name, params] of [[CLASS, parameters], [THROTTLED_CLASS, throttled]] as const) {
    await cluster.kube.kubectl(['apply', '-f', '-'], JSON.stringify({
      apiVersion: 'storage.k8s.io/v1',
      kind: 'StorageClass',
      metadata: { name },
      provisioner: DRIVER,
      volumeBindingMode: 'WaitForFirstConsumer',
      reclaimPolicy: 'Delete',
      parameters: params,
    }));
  }
}, { timeout: 600_000 });

after(async () => {
  if (!env) return;
  await cluster?.kube.run('kubectl', ['delete', 'namespace', NS, '--wait=false']);
  await cluster?.kube.run('kubectl', ['delete', 'storageclass', CLASS, THROTTLED_CLASS, '--wait=false']);
  await cluster?.teardown();
}, { timeout: 300_000 });

// ---- the volume and the kubelet's calls

interface Volume {
  claim: string;
  pv: string;
  id: string;
  context: Record<string, string>;
  /** The member nodes from the RaidVolume's placement: A (node-a, where it was created) and B. */
  a: NodeName;
  b: NodeName;
  bytes: number;
}

/** A block PVC and a Pod on node-a that needs it; waits for Bound and the RaidVolume's placement. */
async function provision(claim: string, size: string, storageClass = CLASS): Promise<Volume> {
  const kube = cluster.kube;
  await kube.kubectl(['apply', '-f', '-'], JSON.stringify({
    apiVersion: 'v1',
    kind: 'List',
    items: [
      {
        apiVersion: 'v1', kind: 'PersistentVolumeClaim', metadata: { name: claim, namespace: NS },
        spec: { accessModes: ['ReadWriteOnce'], volumeMode: 'Block', storageClassName: storageClass, resources: { requests: { storage: size } } },
      },
      {
        apiVersion: 'v1', kind: 'Pod', metadata: { name: `${claim}-user`, namespace: NS },
        spec: {
          nodeSelector: { 'kubernetes.io/hostname': 'node-a' },
          containers: [{ name: 'app', image: 'registry.invalid/app:0', volumeDevices: [{ name: 'data', devicePath: '/dev/xvda' }] }],
          volumes: [{ name: 'data', persistentVolumeClaim: { claimName: claim } }],
        },
      },
    ],
  }));
  const pvc = await waitFor(`PVC ${claim} to be Bound`, 240_000, async () => {
    const c = await kube.get(['pvc', '-n', NS, claim]);
    return c?.status?.phase === 'Bound' ? c : undefined;
  }, async () => `${await kube.kubectl(['describe', 'pvc', '-n', NS, claim])}\n${await cluster.node('node-a').logTail('csi-provisioner', 20)}\n${await cluster.node('node-a').logTail('llraid', 20)}`);
  const pvName = String(pvc.spec?.volumeName);
  const pv = await kube.get(['pv', pvName]);
  assert.ok(pv, `expected PV ${pvName}`);
  const csi = pv.spec?.csi as { volumeHandle: string; volumeAttributes?: Record<string, string> };
  const rv = await raidVolume(csi.volumeHandle);
  const placement = (rv.spec?.placement ?? []) as { slot: number; node: string }[];
  const nodes = [...new Set(placement.map((p) => p.node))].sort();
  assert.equal(nodes.length, 2, `expected members on 2 distinct nodes, found placement ${JSON.stringify(placement)}`);
  assert.ok(nodes.includes('node-a'), 'CreateVolume puts one member on the node it runs on');
  // The PV's node affinity lists the member nodes (and only them: disklessAttach is off).
  const terms = (pv.spec?.nodeAffinity as { required: { nodeSelectorTerms: { matchExpressions: { key: string; values: string[] }[] }[] } }).required.nodeSelectorTerms;
  const affinity = [...new Set(terms.flatMap((t) => t.matchExpressions.flatMap((e) => e.values)))].sort();
  assert.deepEqual(affinity, nodes);
  const cap = String((pv.spec?.capacity as Record<string, string>).storage);
  return {
    claim, pv: pvName, id: csi.volumeHandle, context: csi.volumeAttributes ?? {},
    a: 'node-a', b: nodes.find((n) => n !== 'node-a') as NodeName, bytes: quantityBytes(cap),
  };
}

async function raidVolume(id: string): Promise<KubeObject> {
  const rv = await cluster.kube.get(['raidvolume', id]);
  assert.ok(rv, `expected RaidVolume ${id}`);
  return rv;
}

async function owner(id: string): Promise<{ node: string; epoch: number }> {
  const o = (await raidVolume(id)).spec?.owner as { node: string; epoch: number } | undefined;
  assert.ok(o, `expected spec.owner on RaidVolume ${id}`);
  return o;
}

function paths(node: KubeletStandIn, v: Volume): { staging: string; target: string } {
  const csiDir = node.hostPath(`/var/lib/kubelet/plugins/kubernetes.io/csi/volumeDevices`);
  return { staging: join(csiDir, 'staging', v.pv), target: join(csiDir, 'publish', v.pv, `pod-on-${node.nodeName}`) };
}

const BLOCK = { block: {}, access_mode: { mode: 'SINGLE_NODE_WRITER' } };

/** kubelet: NodeStage then NodePublish of the block volume on `name`; returns the device (the target file). */
async function stage(name: NodeName, v: Volume, timeoutMs = 180_000): Promise<string> {
  const node = cluster.node(name);
  const { staging, target } = paths(node, v);
  mkdirSync(staging, { recursive: true });
  mkdirSync(join(target, '..'), { recursive: true });
  await node.csi.call('Node', 'NodeStageVolume', {
    volume_id: v.id, staging_target_path: staging, volume_capability: BLOCK, volume_context: v.context, publish_context: {}, secrets: {},
  }, timeoutMs);
  await node.csi.call('Node', 'NodePublishVolume', {
    volume_id: v.id, staging_target_path: staging, target_path: target, volume_capability: BLOCK, readonly: false, volume_context: v.context, publish_context: {}, secrets: {},
  }, 60_000);
  return target;
}

async function unstage(name: NodeName, v: Volume): Promise<void> {
  const node = cluster.node(name);
  const { staging, target } = paths(node, v);
  await node.csi.call('Node', 'NodeUnpublishVolume', { volume_id: v.id, target_path: target }, 60_000);
  await node.csi.call('Node', 'NodeUnstageVolume', { volume_id: v.id, staging_target_path: staging }, 120_000);
}

// ---- the engine serving a volume on a node (its control socket under the node's run dir)

interface EngineStatus {
  working: number;
  raidDisks: number;
  state: string;
  fenced: string | null;
  sync: unknown;
  resyncPending: number | null;
  bytesSyncedTotal: number;
  mismatchCount: number;
  bitmap: { chunkSize: number; counts: Record<string, number> };
  members: { name: string; state: string; remote: boolean; recovery: { bytesDone: number } | null }[];
}

function controlSocket(name: NodeName, v: Volume): string {
  return join(cluster.node(name).hostPath('/run/llraid'), v.id, 'control.sock');
}

async function llraid(args: string[], timeoutMs = 120_000): Promise<string> {
  const bin = join(cluster.env.repo, 'dist', 'src', 'cli', 'bin.cjs');
  return (await exec(process.execPath, [bin, ...args], { timeout: timeoutMs, maxBuffer: 16 * MiB })).stdout;
}

async function engineStatus(name: NodeName, v: Volume): Promise<EngineStatus> {
  return JSON.parse(await llraid(['status', '--control', controlSocket(name, v), '--json'])) as EngineStatus;
}

/** Waits until `name`'s engine has every member in sync and no sync running or owed. */
async function settled(name: NodeName, v: Volume, timeoutMs: number): Promise<EngineStatus> {
  return waitFor(`${name}'s engine of ${v.id} to have both members in sync and nothing to sync`, timeoutMs, async () => {
    const s = await engineStatus(name, v).catch(() => undefined);
    return s && s.working === s.raidDisks && s.sync === null && s.resyncPending === null ? s : undefined;
  }, async () => `${JSON.stringify(await engineStatus(name, v).catch((e: unknown) => String(e)))}\n${await cluster.node(name).logTail('engine-host', 20)}`);
}

async function events(claim: string): Promise<{ reason: string; message: string }[]> {
  const list = await cluster.kube.list(['events', '-n', NS, '--field-selector', `involvedObject.kind=PersistentVolumeClaim,involvedObject.name=${claim}`]);
  return list.map((e) => ({ reason: String(e.reason), message: String(e.message) }));
}

const CAPTURE_DIR = process.env.LLRAID_CAPTURE_DESCRIBE;
let captured = 0;

/**
 * Deletes `v`'s claim and pod and waits until DeleteVolume removed its RaidVolume: the nodes' 4 GiB
 * disks hold the 3 GiB absence volume only until it goes, and a scenario after it that is placed
 * on a full node waits for a member that node cannot allocate.
 */
async function release(v: Volume): Promise<void> {
  const kube = cluster.kube;
  // No kubelet runs its container: the pod goes at once, or the claim's protection keeps it.
  await kube.kubectl(['delete', 'pod', '-n', NS, `${v.claim}-user`, '--grace-period=0', '--force']);
  await kube.kubectl(['delete', 'pvc', '-n', NS, v.claim, '--wait=false']);
  await waitFor(`RaidVolume ${v.id} to be deleted`, 180_000, async () =>
    (await kube.get(['raidvolume', v.id])) === undefined ? true : undefined);
}

/** With LLRAID_CAPTURE_DESCRIBE: what kubectl shows of `v` now, into DIR/<scenario>-<n>-<moment>.txt. */
async function capture(scenario: string, moment: string, v: Volume): Promise<void> {
  if (!CAPTURE_DIR) return;
  const kube = cluster.kube;
  const shown = async (args: string[]): Promise<string> => {
    const r = await kube.run('kubectl', args);
    return `$ kubectl ${args.join(' ')}\n${r.stdout}${r.stderr}`;
  };
  const text = [
    `# ${moment} (${new Date().toISOString()})`,
    await shown(['get', 'rv', v.id]),
    await shown(['describe', 'raidvolume', v.id]),
    await shown(['describe', 'pvc', '-n', NS, v.claim]),
  ].join('\n');
  mkdirSync(CAPTURE_DIR, { recursive: true });
  writeFileSync(join(CAPTURE_DIR, `${scenario}-${++captured}-${moment}.txt`), text);
}

/** Brings a stopped or crashed node back, as after a reboot: its kubelet, engine host and plugin. */
async function restart(name: NodeName): Promise<void> {
  const node = cluster.node(name);
  // A rebooted node has none of the mounts it had (a crash left its FUSE and loop mounts dead).
  await node.unmountAll();
  await node.registerNode();
  await cluster.startPods(name);
}

function roundUp(n: number, unit: number): number {
  return Math.ceil(n / unit) * unit;
}

// ---- the scenarios

test('a StorageClass with replicas 2 provisions a raid1 volume with one member on each of two nodes', { skip, timeout: 300_000 }, async () => {
  const v = await provision('placed', '256Mi');
  const rv = await raidVolume(v.id);
  assert.equal(rv.spec?.replicas, 2);
  assert.deepEqual(rv.spec?.owner && { node: (rv.spec.owner as { node: string }).node }, { node: '' }, 'created released: nobody staged it yet');
  const finalizers = (rv.metadata.finalizers as string[] | undefined ?? []).sort();
  assert.deepEqual(finalizers, [`llraid.io/member-${v.a}`, `llraid.io/member-${v.b}`].sort());
  // Each member file is on its own node's disks.
  for (const p of rv.spec?.placement as { node: NodeName; file: string }[]) {
    const found = await Promise.all(cluster.diskPaths(p.node).map((d) => exec('ls', [join(d, p.file)]).then(() => true, () => false)));
    assert.ok(found.includes(true), `expected ${p.file} on a disk of ${p.node}`);
  }
});

test('clean move A→B: NodeStage on B after NodeUnstage on A resyncs 0 bytes and reads the same data', { skip, timeout: 600_000 }, async () => {
  const v = await provision('move', '256Mi');
  const onA = await stage(v.a, v);
  const first = await owner(v.id);
  assert.equal(first.node, v.a);
  await writeRegion(onA, 0, 16 * MiB, 1);
  const before = await deviceHash(onA, 0, 16 * MiB);
  await unstage(v.a, v);
  assert.equal((await owner(v.id)).node, '', 'NodeUnstage releases the volume');

  const t0 = Date.now();
  const onB = await stage(v.b, v);
  process.stdout.write(`clean move: NodeStage on ${v.b} took ${Date.now() - t0} ms\n`);
  const moved = await owner(v.id);
  assert.deepEqual({ node: moved.node, epoch: moved.epoch }, { node: v.b, epoch: first.epoch + 1 });
  const s = await settled(v.b, v, 60_000);
  assert.equal(s.bytesSyncedTotal, 0, 'a clean stop left nothing to resync');
  assert.ok(s.members.some((m) => m.remote) && s.members.some((m) => !m.remote), 'B serves its own member and A\'s over the network');
  assert.equal(await deviceHash(onB, 0, 16 * MiB), before);
  assert.ok(!(await events(v.claim)).some((e) => e.reason === 'TakeOver'), 'a clean move is no take-over');
  await unstage(v.b, v);
});

test('kill -9 of A\'s plugin and engine mid-write: B takes over once A\'s lease expired, no acknowledged write is lost, A\'s return resyncs only the chunks in flight', { skip, timeout: 900_000 }, async () => {
  const v = await provision('crash', '256Mi');
  const onA = await stage(v.a, v);
  const epochA = (await owner(v.id)).epoch;
  const region = 2 * MiB;
  const writer = startAckWriter(cluster.net.node(v.a), onA, region, cluster.node(v.a).dir);
  await waitFor('the application on A to have 300 writes acknowledged', 120_000, async () => ((await writer.acks()).length >= 300 ? true : undefined));
  const chunkSize = (await engineStatus(v.a, v)).bitmap.chunkSize;
  // The crash: every llraid process of node A (plugin, engine host, engines, nbdfuse, the
  // member service) and the application die at once; A's kubelet stops with them.
  await cluster.node(v.a).stop({ crash: true });
  await writer.exited;
  const acks = await writer.acks();

  const t0 = Date.now();
  const onB = await stage(v.b, v, 4 * LEASE_SECONDS * 1000 + 120_000);
  const took = Date.now() - t0;
  process.stdout.write(`crash take-over: NodeStage on ${v.b} took ${took} ms (node Lease ${LEASE_SECONDS} s)\n`);
  const taken = await owner(v.id);
  assert.deepEqual({ node: taken.node, epoch: taken.epoch }, { node: v.b, epoch: epochA + 1 });
  const takeOver = await waitFor('a TakeOver Event on the PVC', 30_000, async () => (await events(v.claim)).find((e) => e.reason === 'TakeOver'));
  assert.match(takeOver.message, new RegExp(`${v.b} took over from ${v.a}.*epoch ${epochA + 1}`));
  const checked = await verifyAcked(onB, region, acks);
  assert.ok(checked.inFlight <= 1, `one write was in flight at most, found ${checked.inFlight} blocks newer than acknowledged`);
  if (CAPTURE_DIR) {
    // The operator's view while A is away: B's status names A's member stale (captured after a
    // minute whatever it says: the capture shows, it does not test).
    await waitFor('the RaidVolume to show A\'s member stale', 60_000, async () =>
      ((await raidVolume(v.id)).status?.members as { state?: string }[] | undefined)?.some((m) => m.state === 'Stale') ? true : undefined)
      .catch(() => undefined);
    await capture('crash', 'after-take-over', v);
  }

  // A comes back: B's engine re-adds A's member and copies only what the bitmap marked.
  await restart(v.a);
  // The recovery may be over before a status write shows it: caught if it is seen, else not.
  const watching = CAPTURE_DIR ? waitFor('a status write showing A\'s member recovering or in sync', 120_000, async () => {
    const members = ((await raidVolume(v.id)).status?.members as { state?: string }[] | undefined) ?? [];
    if (members.some((m) => m.state === 'Recovering')) return 'recovering';
    return members.length > 0 && members.every((m) => m.state === 'InSync') ? 'in sync' : undefined;
  }).then((seen) => (seen === 'recovering' ? capture('crash', 'recovering', v) : undefined), () => undefined) : undefined;
  const s = await settled(v.b, v, 300_000);
  await watching;
  if (CAPTURE_DIR) {
    await waitFor('the RaidVolume to show both members in sync', 60_000, async () =>
      ((await raidVolume(v.id)).status?.members as { state?: string }[] | undefined)?.every((m) => m.state === 'InSync') ? true : undefined)
      .catch(() => undefined);
    await capture('crash', 'back-in-sync', v);
  }
  const bound = roundUp(region, INFECT_CHUNKS * chunkSize);
  assert.ok(s.bytesSyncedTotal <= bound, `resync ≤ the chunks in flight (the writer's ${region} bytes, in resync blocks ${bound}), found ${s.bytesSyncedTotal}`);
  process.stdout.write(`crash: ${s.bytesSyncedTotal} bytes resynced (bound ${bound}, volume ${v.bytes})\n`);
  const check = JSON.parse(await llraid(['check', '--control', controlSocket(v.b, v), '--json'], 600_000)) as { mismatchCount: number };
  assert.equal(check.mismatchCount, 0);
  await unstage(v.b, v);
});

test('A partitioned by link down while writing: A stops acknowledging within the lease time, B takes over, no divergence after heal', { skip, timeout: 900_000 }, async () => {
  const v = await provision('partition', '256Mi');
  const onA = await stage(v.a, v);
  const epochA = (await owner(v.id)).epoch;
  const region = 2 * MiB;
  const writer = startAckWriter(cluster.net.node(v.a), onA, region, cluster.node(v.a).dir);
  await waitFor('the application on A to have 300 writes acknowledged', 120_000, async () => ((await writer.acks()).length >= 300 ? true : undefined));
  const cut = Date.now();
  await cluster.node(v.a).partition();

  // A's engine holds writes once its lease is over: the last acknowledgement comes before
  // cut + D (the plan: engines stop at t_sent + D - margin, t_sent ≤ cut).
  await new Promise((r) => setTimeout(r, (LEASE_SECONDS + 5) * 1000));
  const acksAtLapse: Ack[] = await readAcks(writer.log);
  const lastAck = acksAtLapse.reduce((m, a) => Math.max(m, a.ms), 0);
  assert.ok(lastAck - cut <= LEASE_SECONDS * 1000, `A acknowledged a write ${lastAck - cut} ms after the cut, more than the lease (${LEASE_SECONDS} s)`);

  const onB = await stage(v.b, v, 4 * LEASE_SECONDS * 1000 + 120_000);
  const taken = await owner(v.id);
  assert.deepEqual({ node: taken.node, epoch: taken.epoch }, { node: v.b, epoch: epochA + 1 });
  const acksAtTakeOver = await readAcks(writer.log);
  await verifyAcked(onB, region, acksAtTakeOver);

  // Heal: A's engine is fenced by the higher epoch and its held writes fail; none is acknowledged.
  await cluster.node(v.a).heal();
  const exitCode = await Promise.race([writer.exited, new Promise<'running'>((r) => setTimeout(() => r('running'), 120_000))]);
  assert.notEqual(exitCode, 0, 'the application on A sees its held write fail (or is still held), never succeed');
  if (exitCode === 'running') writer.child.kill('SIGKILL');
  const acksAfter = await readAcks(writer.log);
  assert.equal(acksAfter.length, acksAtTakeOver.length, 'no write was acknowledged on A after B took over');
  const s = await settled(v.b, v, 300_000);
  process.stdout.write(`partition: ${s.bytesSyncedTotal} bytes resynced after heal\n`);
  const check = JSON.parse(await llraid(['check', '--control', controlSocket(v.b, v), '--json'], 600_000)) as { mismatchCount: number };
  assert.equal(check.mismatchCount, 0, 'llraid check: both copies equal after heal');
  await verifyAcked(onB, region, acksAfter);
  // A's kubelet tears its pod's mount down: it no longer owns the volume, and unstaging says OK.
  await unstage(v.a, v).catch(() => undefined);
  await unstage(v.b, v);
});

test('A back after an absence with 1% of the volume rewritten: only that is recovered', { skip, timeout: 900_000 }, async () => {
  const v = await provision('absence', '3Gi', THROTTLED_CLASS);
  const onB = await stage(v.b, v);
  await writeRegion(onB, 0, 64 * MiB, 1);
  await settled(v.b, v, 120_000);
  // The first write's chunks are Dirty until the daemon finds them idle (barrier_idle, then its
  // next pass); a member that leaves before that misses them as far as the bitmap can tell, and
  // they would be recovered too. Only what is written while A is away may count.
  await waitFor('the bitmap daemon to clean the first write\'s chunks', 120_000, async () =>
    (await engineStatus(v.b, v)).bitmap.counts.dirty === 0 ? true : undefined);
  const chunkSize = (await engineStatus(v.b, v)).bitmap.chunkSize;
  // A goes away (a clean shutdown of the whole node, its member service with it).
  await cluster.node(v.a).stop();
  // B's engine notices A's member gone on its next writes (member timeout) and runs degraded.
  const onePercent = roundUp(Math.floor(v.bytes / 100), RECORD);
  const offset = 512 * MiB;
  await writeRegion(onB, offset, onePercent, 1_000_000);
  await waitFor('B\'s engine to run degraded without A\'s member', 120_000, async () => {
    const s = await engineStatus(v.b, v);
    return s.working < s.raidDisks ? true : undefined;
  });
  await new Promise((r) => setTimeout(r, 30_000));
  const before = await deviceHash(onB, 0, offset + onePercent);
  const synced0 = (await engineStatus(v.b, v)).bytesSyncedTotal;
  await restart(v.a);
  // What an operator sees meanwhile: A's member Recovering, with its bytes and progress.
  const recovering = await waitFor('the RaidVolume to show A\'s member Recovering', 120_000, async () => {
    type Shown = { status?: { members?: { node: string; state: string; recovery?: { bytesDone: number; bytesToCopy: number; progress: string } }[] } };
    const rv = await cluster.kube.get<Shown>(['raidvolume', v.id]);
    return rv?.status?.members?.find((m) => m.node === v.a && m.state === 'Recovering' && m.recovery !== undefined);
  });
  await capture('absence', 'recovering', v);
  assert.ok(recovering.recovery!.bytesToCopy >= onePercent && recovering.recovery!.bytesDone <= recovering.recovery!.bytesToCopy,
    `Recovering ${JSON.stringify(recovering.recovery)} for ${onePercent} bytes rewritten`);
  assert.match(recovering.recovery!.progress, /^\d+(\.\d+)?%$/);
  const s = await settled(v.b, v, 600_000);
  await capture('absence', 'recovered', v);
  const recovered = s.bytesSyncedTotal - synced0;
  const bound = roundUp(onePercent, INFECT_CHUNKS * chunkSize) + INFECT_CHUNKS * chunkSize;
  process.stdout.write(`absence: ${recovered} bytes recovered for ${onePercent} rewritten (volume ${v.bytes}, bound ${bound})\n`);
  assert.ok(recovered >= onePercent, `the rewritten ${onePercent} bytes are recovered, found ${recovered}`);
  assert.ok(recovered <= bound && recovered <= 0.05 * v.bytes, `only what was rewritten (≤ ${bound}, ≤ 5% of ${v.bytes}), found ${recovered}`);
  assert.equal(await deviceHash(onB, 0, offset + onePercent), before);
  const check = JSON.parse(await llraid(['check', '--control', controlSocket(v.b, v), '--json'], 900_000)) as { mismatchCount: number };
  assert.equal(check.mismatchCount, 0);
  await unstage(v.b, v);
  await release(v);
});

test('two nodes racing to stage the same volume: exactly one wins, the other is ABORTED naming the owner', { skip, timeout: 600_000 }, async () => {
  const v = await provision('race', '256Mi');
  const racers = [v.a, v.b] as const;
  const results = await Promise.allSettled(racers.map((n) => stage(n, v, 4 * LEASE_SECONDS * 1000 + 120_000)));
  const won = racers.filter((_, i) => results[i]!.status === 'fulfilled');
  assert.equal(won.length, 1, `expected exactly one winner, found ${won.length}: ${results.map((r) => r.status).join(', ')}`);
  const winner = won[0]!;
  const loser = racers.find((n) => n !== winner)!;
  const lost = results[racers.indexOf(loser)] as PromiseRejectedResult;
  assert.match(String(lost.reason), /ABORTED/);
  assert.match(String(lost.reason), new RegExp(`owned by (node )?${winner}`));
  assert.equal((await owner(v.id)).node, winner);
  // The loser has no engine of the volume.
  await assert.rejects(engineStatus(loser, v));
  await unstage(winner, v);
});

test('every node plugin is still serving after the scenarios', { skip }, async () => {
  for (const n of NODES) assert.ok(cluster.node(n.name).pid('llraid'), `expected ${n.name}'s plugin running`);
});

/** Bytes of a Kubernetes quantity ("268435456", "256Mi", "3Gi"). */
function quantityBytes(q: string): number {
  const m = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?$/.exec(q);
  if (!m) throw new Error(`expected a Kubernetes quantity, found ${JSON.stringify(q)}`);
  const mult: Record<string, number> = { Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3, Ti: 1024 ** 4, k: 1e3, M: 1e6, G: 1e9, T: 1e12 };
  return Math.round(Number(m[1]) * (m[2] ? (mult[m[2]] ?? 1) : 1));
}
