// A replicated volume between two node plugins on this machine, without a cluster: two drivers
// (the real CSI services over their gRPC sockets, each with its own disks, run dir, kubelet dir
// and member service on its own loopback port with the chart's kind of TLS certificate) share an
// in-memory ReplicationStore and NodeLiveness (test/support/fake-replication.ts) where the API
// server would be. Everything else is real: `llraid member-serve` processes, `llraid serve`
// engines opening one member as a file and the other through the other node's member service
// (NBD over TLS, epochs), nbdfuse attachments.
//
// Create (raid1, replicas 2) from plugin A, stage on A, write with a checksum, unstage; stage on
// B: the same bytes, and nothing resynced (the clean stop on A left both members in sync). Then
// B is unstaged and the volume deleted: every member file on both nodes goes, and the RaidVolume
// with the last finalizer.

import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { engineSource } from '../../src/cli/commands/csi.js';
import { resolveConfig } from '../../src/csi/config.js';
import { startDriver, type RunningDriver } from '../../src/csi/driver.js';
import { MdArrays } from '../../src/csi/md-arrays.js';
import { readEngineEvents } from '../../src/engine/events.js';
import type { NodeReporting, VolumeStatus } from '../../src/k8s/index.js';
import { buildCli } from '../support/cli.js';
import { memberTls } from '../support/certs.js';
import { FakeLeaseKeeper, FakeLiveness, FakeReplicationStore } from '../support/fake-replication.js';
import { freePort } from '../nbd/client-helpers.js';
import { blockCap, csiClient, teardown, type CsiClient } from './plugin-harness.js';

const MiB = 1024 * 1024;
const canRun = process.getuid?.() === 0 && existsSync('/usr/bin/nbdfuse') && existsSync('/dev/fuse');

/** What a node reported to the cluster, by volume (the last snapshot), as src/k8s would receive it. */
class RecordingReporting implements NodeReporting {
  readonly metrics = undefined as unknown as NodeReporting['metrics'];
  readonly last = new Map<string, VolumeStatus>();
  update(s: VolumeStatus): void {
    this.last.set(s.name, s);
  }
  remove(name: string): void {
    this.last.delete(name);
  }
  setPool(): void {}
  async close(): Promise<void> {}
}

interface NodePlugin {
  name: string;
  dir: string;
  disks: string[];
  runDir: string;
  kubeletDir: string;
  memberService: string;
  driver: RunningDriver;
  controller: CsiClient;
  node: CsiClient;
  keeper: FakeLeaseKeeper;
  reporting: RecordingReporting;
  /** Starts or stops the renewals of the node's Lease (a node cut off from the API server). */
  renewing(on: boolean): void;
}

/**
 * A test's directory and what must be undone before it goes, last first: node:test runs a test's
 * `after` hooks in the order they were added, and the directory must outlive the plugins, whose
 * mounts and engines are in it.
 */
function scope(t: TestContext, name: string): { root: string; undo: Array<() => Promise<void>> } {
  const root = mkdtempSync(path.join(os.tmpdir(), `llraid-${name}-`));
  const undo: Array<() => Promise<void>> = [];
  t.after(async () => {
    for (const fn of undo.reverse()) await fn().catch((err: unknown) => process.stderr.write(`cleanup: ${String(err)}\n`));
    rmSync(root, { recursive: true, force: true });
  });
  return { root, undo };
}

async function startNode(
  undo: Array<() => Promise<void>>,
  root: string,
  name: string,
  tlsDir: string,
  shared: { store: FakeReplicationStore; liveness: FakeLiveness },
  /** The node's Lease: renewed every second for this long, as the real keeper would; default: ten minutes once. */
  leaseMs?: number,
): Promise<NodePlugin> {
  const cli = await buildCli();
  const dir = path.join(root, name);
  const disks = [0, 1].map((i) => path.join(dir, `disk${i}`));
  for (const d of disks) mkdirSync(d, { recursive: true });
  const kubeletDir = path.join(dir, 'kubelet');
  mkdirSync(kubeletDir);
  const runDir = path.join(dir, 'run');
  const port = await freePort();
  const memberService = `127.0.0.1:${port}`;
  shared.liveness.live(name, memberService);
  const config = resolveConfig({
    endpoint: `unix://${path.join(dir, 'csi.sock')}`, nodeId: name, disks, attach: 'fuse', runDir, kubeletDir,
    memberServiceListen: memberService, tlsDir, namespace: 'llraid-test', nodeLeaseDuration: '4', nodeLeaseRenew: '1',
  });
  const keeper = new FakeLeaseKeeper(leaseMs ?? 600_000);
  let renewals: NodeJS.Timeout | undefined;
  const renewing = (on: boolean): void => {
    clearInterval(renewals);
    renewals = on && leaseMs !== undefined ? setInterval(() => keeper.renew(), 1000) : undefined;
  };
  const log: string[] = [];
  const reporting = new RecordingReporting();
  const driver = await startDriver(config, {
    reporting,
    statusIntervalMs: 300,
    arrays: new MdArrays(),
    engineSource,
    engineCommand: [process.execPath, cli],
    replication: { store: shared.store, liveness: shared.liveness, keeper, reports: { forClaim: async () => ({ room: undefined, allowedNodes: undefined }) } },
    version: 'test',
    log: (m) => {
      log.push(m);
      if (process.env.LLRAID_TEST_LOG) process.stderr.write(`[${name}] ${m}\n`);
    },
  });
  const socket = driver.socket;
  const plugin: NodePlugin = {
    name, dir, disks, runDir, kubeletDir, memberService, driver, keeper, renewing, reporting,
    controller: csiClient(socket, 'Controller'),
    node: csiClient(socket, 'Node'),
  };
  renewing(true);
  undo.push(async () => {
    renewing(false);
    plugin.controller.close();
    plugin.node.close();
    await driver.stop();
    // What a failed run left (mounts, attachments, engines), then the member service, which a
    // stopped plugin leaves running for the next one to adopt.
    await teardown(dir, runDir);
  });
  await driver.replicationReady;
  return plugin;
}

/** A file of `bytes` random bytes' worth of writes through the staged volume's published device, and its hash. */
async function writePattern(device: string, bytes: number): Promise<string> {
  const data = randomBytes(bytes);
  const fh = await fs.open(device, 'r+');
  try {
    await fh.write(data, 0, data.length, 0);
    await fh.sync();
  } finally {
    await fh.close();
  }
  return createHash('sha256').update(data).digest('hex');
}

async function readHash(device: string, bytes: number): Promise<string> {
  const buf = Buffer.alloc(bytes);
  const fh = await fs.open(device, 'r');
  try {
    await fh.read(buf, 0, bytes, 0);
  } finally {
    await fh.close();
  }
  return createHash('sha256').update(buf).digest('hex');
}

function paths(p: NodePlugin, pv: string): { staging: string; target: string } {
  return {
    staging: path.join(p.kubeletDir, 'plugins/kubernetes.io/csi/volumeDevices/staging', pv),
    target: path.join(p.kubeletDir, 'plugins/kubernetes.io/csi/volumeDevices/publish', pv, `pod-on-${p.name}`),
  };
}

/** kubelet: NodeStage then NodePublish of the block volume; the published device path. */
async function stageAndPublish(p: NodePlugin, id: string, context: Record<string, string>): Promise<string> {
  const { staging, target } = paths(p, 'pv-1');
  await p.node.NodeStageVolume({ volume_id: id, staging_target_path: staging, volume_capability: blockCap(), volume_context: context });
  await p.node.NodePublishVolume({ volume_id: id, staging_target_path: staging, target_path: target, volume_capability: blockCap(), readonly: false, volume_context: context });
  return target;
}

async function unpublishAndUnstage(p: NodePlugin, id: string): Promise<void> {
  const { staging, target } = paths(p, 'pv-1');
  await p.node.NodeUnpublishVolume({ volume_id: id, target_path: target });
  await p.node.NodeUnstageVolume({ volume_id: id, staging_target_path: staging });
}

/** CreateVolume of a 64 MiB raid1 with replicas 2 on `p`. */
async function createReplicated(p: NodePlugin, name: string): Promise<{ volume_id: string; volume_context: Record<string, string> }> {
  const created = (await p.controller.CreateVolume({
    name, capacity_range: { required_bytes: 64 * MiB, limit_bytes: 0 }, volume_capabilities: [blockCap()], parameters: { level: '1', replicas: '2' },
  })) as { volume: { volume_id: string; volume_context: Record<string, string> } };
  return created.volume;
}

async function until(what: string, check: () => Promise<boolean> | boolean, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function memberFiles(p: NodePlugin, id: string): Promise<string[]> {
  const out: string[] = [];
  for (const d of p.disks) for (const f of await fs.readdir(d)) if (f.includes(id)) out.push(path.join(d, f));
  return out.sort();
}

test('a replicas=2 raid1 volume created on A, written on A, moved cleanly to B: the same bytes, nothing resynced; deleted from both nodes', { skip: !canRun && 'needs root, nbdfuse and /dev/fuse', timeout: 300_000 }, async (t) => {
  const { root, undo } = scope(t, 'replicated');
  const { tlsDir } = await memberTls(root);

  const store = new FakeReplicationStore();
  const liveness = new FakeLiveness();
  const a = await startNode(undo, root, 'node-a', tlsDir, { store, liveness });
  const b = await startNode(undo, root, 'node-b', tlsDir, { store, liveness });

  const created = (await a.controller.CreateVolume({
    name: 'pvc-moves',
    capacity_range: { required_bytes: 64 * MiB, limit_bytes: 0 },
    volume_capabilities: [blockCap()],
    parameters: { level: '1', replicas: '2', 'csi.storage.k8s.io/pvc/name': 'data', 'csi.storage.k8s.io/pvc/namespace': 'app' },
    accessibility_requirements: { requisite: [], preferred: [] },
  })) as { volume: { volume_id: string; capacity_bytes: number; accessible_topology: { segments: Record<string, string> }[]; volume_context: Record<string, string> } };
  const v = created.volume;
  assert.equal(v.capacity_bytes, 64 * MiB);
  assert.deepEqual(v.accessible_topology.map((s) => s.segments['topology.llraid.io/node']), ['node-a', 'node-b']);
  const rv = store.peek(v.volume_id)!;
  assert.deepEqual(rv.placement.map((p) => [p.slot, p.node]), [[0, 'node-a'], [1, 'node-b']]);
  assert.deepEqual([rv.owner.node, rv.owner.epoch], ['', 1], 'created at epoch 1, released');
  assert.deepEqual(rv.claim, { namespace: 'app', name: 'data' });
  assert.equal((await memberFiles(a, v.volume_id)).filter((f) => f.endsWith('.img')).length, 1);
  assert.equal((await memberFiles(b, v.volume_id)).filter((f) => f.endsWith('.img')).length, 1);
  // Idempotent by name: the same volume again, nothing new.
  const again = (await a.controller.CreateVolume({
    name: 'pvc-moves', capacity_range: { required_bytes: 64 * MiB, limit_bytes: 0 }, volume_capabilities: [blockCap()], parameters: { level: '1', replicas: '2' },
  })) as { volume: { volume_id: string } };
  assert.equal(again.volume.volume_id, v.volume_id);

  const onA = await stageAndPublish(a, v.volume_id, v.volume_context);
  assert.deepEqual([store.peek(v.volume_id)!.owner.node, store.peek(v.volume_id)!.owner.epoch], ['node-a', 2]);
  const written = 16 * MiB;
  const hash = await writePattern(onA, written);
  // The owner reports the volume, live, each member with its node.
  await until('A to report the volume', () => a.reporting.last.get(v.volume_id)?.members.length === 2);
  assert.deepEqual(a.reporting.last.get(v.volume_id)!.members.map((m) => m.node).sort(), ['node-a', 'node-b']);
  assert.equal(a.reporting.last.get(v.volume_id)!.node, 'node-a');
  assert.equal(b.reporting.last.get(v.volume_id), undefined, 'B owns nothing: it reports nothing');
  // B may not take it while A's Lease is live: the stage waits (bounded), then ABORTED naming A.
  await assert.rejects(
    b.node.NodeStageVolume({ volume_id: v.volume_id, staging_target_path: paths(b, 'pv-1').staging, volume_capability: blockCap(), volume_context: v.volume_context }),
    (err: Error & { code?: number }) => err.code === 10 && /owned by node node-a whose lease is valid/.test(err.message),
  );
  await unpublishAndUnstage(a, v.volume_id);
  assert.deepEqual([store.peek(v.volume_id)!.owner.node, store.peek(v.volume_id)!.owner.epoch], ['', 2], 'released after a clean stop, epoch kept');

  const onB = await stageAndPublish(b, v.volume_id, v.volume_context);
  assert.deepEqual([store.peek(v.volume_id)!.owner.node, store.peek(v.volume_id)!.owner.epoch], ['node-b', 3]);
  assert.equal(await readHash(onB, written), hash, 'the bytes written on A, read on B');
  await until('B to report it and A to stop', () => b.reporting.last.get(v.volume_id)?.node === 'node-b' && !a.reporting.last.has(v.volume_id));
  const events = await readEngineEvents(path.join(b.runDir, v.volume_id, 'events.jsonl'));
  const assembled = events.find((e) => e.type === 'assembled');
  assert.ok(assembled && assembled.type === 'assembled');
  assert.deepEqual([assembled.working, assembled.raidDisks, assembled.unclean, assembled.bitmap.markedChunks], [2, 2, false, 0], 'both members in sync at B\'s start');
  const synced = events.filter((e) => e.type === 'sync-ended').reduce((n, e) => n + (e.type === 'sync-ended' ? e.bytesSynced : 0), 0);
  assert.equal(synced, 0, '0 bytes resynced');
  const status = await b.driver.node.runtime(v.volume_id);
  assert.equal(status.array?.working, 2);
  assert.equal(status.array?.sync ?? null, null);
  await unpublishAndUnstage(b, v.volume_id);

  await a.controller.DeleteVolume({ volume_id: v.volume_id });
  const deadline = Date.now() + 30_000;
  while (store.peek(v.volume_id) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  assert.equal(store.peek(v.volume_id), undefined, 'the RaidVolume goes once both member nodes removed their files');
  assert.deepEqual(await memberFiles(a, v.volume_id), []);
  assert.deepEqual(await memberFiles(b, v.volume_id), []);
});

test('A loses the API server while staged: its engine lapses, B takes over with a higher epoch and the same bytes, A\'s engine is fenced and, when A renews again, stopped', { skip: !canRun && 'needs root, nbdfuse and /dev/fuse', timeout: 300_000 }, async (t) => {
  const { root, undo } = scope(t, 'takeover');
  const { tlsDir } = await memberTls(root);
  const store = new FakeReplicationStore();
  const liveness = new FakeLiveness();
  // Leases of 3 s renewed every second, as a keeper with D = 4 s would hold them.
  const a = await startNode(undo, root, 'node-a', tlsDir, { store, liveness }, 3000);
  const b = await startNode(undo, root, 'node-b', tlsDir, { store, liveness }, 3000);
  const v = await createReplicated(a, 'pvc-taken');
  const onA = await stageAndPublish(a, v.volume_id, v.volume_context);
  const written = 8 * MiB;
  const hash = await writePattern(onA, written);
  const engineA = await a.driver.node.runtime(v.volume_id);
  assert.ok(engineA.engineRunning);

  // A is cut off from the API server: no renewal, its engine's lease runs out; B sees A's Lease expire.
  a.renewing(false);
  await until('A\'s lease to lapse', () => a.keeper.validForMs() === 0, 10_000);
  liveness.expire('node-a');
  const onB = await stageAndPublish(b, v.volume_id, v.volume_context);
  assert.deepEqual([store.peek(v.volume_id)!.owner.node, store.peek(v.volume_id)!.owner.epoch], ['node-b', 3]);
  assert.equal(await readHash(onB, written), hash, 'every byte A acknowledged, read on B');
  // B opened A's member through A's member service with epoch 3: A's engine, holding that file, is fenced.
  await until('A\'s engine to be fenced', async () => (await readEngineEvents(path.join(a.runDir, v.volume_id, 'events.jsonl'))).some((e) => e.type === 'fenced'));
  await until('B to run with both members', async () => (await b.driver.node.runtime(v.volume_id)).array?.working === 2);

  // A reaches the API server again: a renewal after the lapse; A's engine is not extended but stopped.
  a.renewing(true);
  await until('A\'s engine to stop', async () => !(await a.driver.node.runtime(v.volume_id)).engineRunning);
  // The kubelet on A unstages the dead attachment later: fine, and the volume stays B's.
  await unpublishAndUnstage(a, v.volume_id);
  assert.equal(store.peek(v.volume_id)!.owner.node, 'node-b');
  assert.equal(await readHash(onB, written), hash);
  await unpublishAndUnstage(b, v.volume_id);
  await a.controller.DeleteVolume({ volume_id: v.volume_id });
  await until('the RaidVolume to go', () => store.peek(v.volume_id) === undefined);
});
