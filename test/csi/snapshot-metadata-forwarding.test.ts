// Changed-block tracking across nodes: two node plugins on this machine (the real drivers, their
// CSI sockets, their member services and the peer endpoints on 127.0.0.1 and 127.0.0.2, the
// chart's kind of member certificate), sharing an in-memory NodeLiveness where the node Leases
// would be (test/support/fake-replication.ts). Disks are XFS with reflink in a loop file, as
// snapshots need. A raid1 volume on node A is written through its engine's NBD socket and
// snapshotted twice; a SnapshotMetadata client on node B's socket gets the allocated ranges and
// the delta, response for response the same bytes as from A's socket. A call to A's peer
// endpoint without a client certificate, or with one another CA signed, is refused; a call
// forwarded to A for a snapshot of B is answered NOT_FOUND there (never forwarded again); with
// A's plugin stopped, B answers UNAVAILABLE naming node A.

import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { credentials, makeGenericClientConstructor, status, type ChannelCredentials, type Client, type ClientReadableStream, type ServiceError } from '@grpc/grpc-js';
import { engineSource } from '../../src/cli/commands/csi.js';
import { resolveConfig } from '../../src/csi/config.js';
import { startDriver, type RunningDriver } from '../../src/csi/driver.js';
import { MdArrays } from '../../src/csi/md-arrays.js';
import { serviceDefinition } from '../../src/csi/proto.js';
import { nodeTag } from '../../src/csi/snapshot-store.js';
import { NbdClientDevice } from '../../src/nbd/index.js';
import { pattern } from '../md/array-fixtures.js';
import { freePort } from '../nbd/client-helpers.js';
import { buildCli } from '../support/cli.js';
import { memberTls } from '../support/certs.js';
import { FakeLeaseKeeper, FakeLiveness, FakeReplicationStore } from '../support/fake-replication.js';
import { mountReflinkFs } from '../support/reflink-fs.js';
import { blockCap, csiClient, readySnapshot, teardown, type CsiClient } from './plugin-harness.js';

const MiB = 1024 * 1024;
const SIZE = 64 * MiB;

interface NodePlugin {
  name: string;
  host: string;
  runDir: string;
  kubeletDir: string;
  driver: RunningDriver;
  controller: CsiClient;
  node: CsiClient;
  stopped: boolean;
  stop(): Promise<void>;
}

/** What must be undone when the test ends, last first (the disk after the plugins on it). */
function undoList(t: TestContext): Array<() => Promise<void>> {
  const undo: Array<() => Promise<void>> = [];
  t.after(async () => {
    for (const fn of undo.reverse()) await fn().catch((err: unknown) => process.stderr.write(`cleanup: ${String(err)}\n`));
  });
  return undo;
}

/**
 * A node plugin whose disks are in `diskRoot` (the reflink XFS) and whose run and kubelet dirs
 * are in a short temp dir: an engine's socket path must fit sockaddr_un.
 */
async function startNode(
  undo: Array<() => Promise<void>>, diskRoot: string, name: string, host: string, peerPort: number, tlsDir: string, liveness: FakeLiveness,
): Promise<NodePlugin> {
  const cli = await buildCli();
  const dir = mkdtempSync(path.join(os.tmpdir(), `llraid-${name}-`));
  undo.push(async () => rmSync(dir, { recursive: true, force: true }));
  const disks = [0, 1].map((i) => path.join(diskRoot, name, `disk${i}`));
  for (const d of disks) mkdirSync(d, { recursive: true });
  const kubeletDir = path.join(dir, 'kubelet');
  mkdirSync(kubeletDir);
  const runDir = path.join(dir, 'run');
  const memberService = `${host}:${await freePort()}`;
  liveness.live(name, memberService);
  const config = resolveConfig({
    endpoint: `unix://${path.join(dir, 'csi.sock')}`, nodeId: name, disks, attach: 'fuse', runDir, kubeletDir,
    memberServiceListen: memberService, tlsDir, namespace: 'llraid-test', nodeLeaseDuration: '4', nodeLeaseRenew: '1',
    snapshotMetadataPeerPort: String(peerPort),
  });
  const driver = await startDriver(config, {
    arrays: new MdArrays(),
    engineSource,
    engineCommand: [process.execPath, cli],
    replication: { store: new FakeReplicationStore(), liveness, keeper: new FakeLeaseKeeper(600_000), reports: { forClaim: async () => ({ room: undefined, allowedNodes: undefined }) } },
    version: 'test',
    log: (m) => {
      if (process.env.LLRAID_TEST_LOG) process.stderr.write(`[${name}] ${m}\n`);
    },
  });
  const plugin: NodePlugin = {
    name, host, runDir, kubeletDir, driver, stopped: false,
    controller: csiClient(driver.socket, 'Controller'),
    node: csiClient(driver.socket, 'Node'),
    async stop() {
      if (plugin.stopped) return;
      plugin.stopped = true;
      plugin.controller.close();
      plugin.node.close();
      await driver.stop();
    },
  };
  undo.push(async () => {
    await plugin.stop();
    // Also stops the member service, which a stopped plugin leaves running for the next one to adopt.
    await teardown(dir, runDir);
  });
  await driver.replicationReady;
  return plugin;
}

type Method = 'GetMetadataAllocated' | 'GetMetadataDelta';
type RawClient = Client & Record<Method, (request: object) => ClientReadableStream<Buffer>>;

/**
 * A SnapshotMetadata client that keeps each response as the bytes that came on the wire, so
 * answers from two nodes compare byte for byte.
 */
function rawClient(address: string, creds: ChannelCredentials, options: object = {}): RawClient {
  const def = serviceDefinition('SnapshotMetadata');
  const raw = Object.fromEntries(Object.entries(def).map(([k, m]) => [k, { ...m, responseDeserialize: (b: Buffer) => b }]));
  const Ctor = makeGenericClientConstructor(raw, 'SnapshotMetadata');
  return new Ctor(address, creds, options) as unknown as RawClient;
}

/** Every response of a call, or the status it ended with. */
async function collect(client: RawClient, method: Method, request: object): Promise<Buffer[]> {
  return new Promise<Buffer[]>((resolve, reject) => {
    const out: Buffer[] = [];
    const call = client[method](request);
    call.on('data', (b: Buffer) => out.push(b));
    call.on('error', reject);
    call.on('end', () => resolve(out));
  });
}

async function rejection(p: Promise<unknown>): Promise<ServiceError> {
  try {
    await p;
  } catch (err) {
    return err as ServiceError;
  }
  assert.fail('expected the call to fail');
}

test('a snapshot on node A is listed through node B byte for byte as through A; the peer endpoint takes only node certificates; A away is UNAVAILABLE naming A', { timeout: 300_000 }, async (t) => {
  const undo = undoList(t);
  const disk = await mountReflinkFs('cbt-forwarding');
  undo.push(() => disk.close());
  const root = mkdtempSync(path.join(disk.dir, 'nodes-'));
  const certDir = mkdtempSync(path.join(os.tmpdir(), 'llraid-cbt-certs-'));
  undo.push(async () => rmSync(certDir, { recursive: true, force: true }));
  const { tlsDir, certs } = await memberTls(certDir);
  const liveness = new FakeLiveness();
  const peerPort = await freePort();
  const a = await startNode(undo, root, 'node-a', '127.0.0.1', peerPort, tlsDir, liveness);
  const b = await startNode(undo, root, 'node-b', '127.0.0.2', peerPort, tlsDir, liveness);

  // A raid1 volume on A: 8 MiB in 32 runs, snapshot, 1 MiB rewritten in 64 KiB runs, snapshot.
  const created = await a.controller.CreateVolume({ name: 'cbt-fwd', capacity_range: { required_bytes: SIZE }, volume_capabilities: [blockCap()], parameters: { level: '1', members: '2' } });
  const id = (created.volume as { volume_id: string }).volume_id;
  const staging = path.join(a.kubeletDir, `staging-${id}`);
  await a.node.NodeStageVolume({ volume_id: id, staging_target_path: staging, volume_capability: blockCap() });
  const snap = async (name: string): Promise<string> =>
    (await readySnapshot(a.controller, id, name)).snapshot_id;
  let first: string;
  let second: string;
  const dev = await NbdClientDevice.connect({ uri: `nbd+unix:///${id}?socket=${path.join(a.runDir, id, 'engine.sock')}` });
  try {
    for (let i = 0; i < 32; i++) await dev.write(i * (SIZE / 32), pattern(i + 1, 256 * 1024));
    first = await snap('cbt-fwd-1');
    for (let i = 0; i < 16; i++) await dev.write(i * (SIZE / 16) + 4096, pattern(1000 + i, 64 * 1024));
    second = await snap('cbt-fwd-2');
  } finally {
    await dev.close();
    await a.node.NodeUnstageVolume({ volume_id: id, staging_target_path: staging });
  }
  assert.equal(first.slice(33, 41), nodeTag('node-a'), 'the snapshot id carries the tag of the node that made it');

  const viaA = rawClient(`unix://${a.driver.socket}`, credentials.createInsecure());
  const viaB = rawClient(`unix://${b.driver.socket}`, credentials.createInsecure());
  t.after(() => {
    viaA.close();
    viaB.close();
  });
  const allocated = { snapshot_id: first, starting_offset: 0, max_results: 4 };
  const delta = { base_snapshot_id: first, target_snapshot_id: second, starting_offset: 0, max_results: 4 };
  const fromA = { allocated: await collect(viaA, 'GetMetadataAllocated', allocated), delta: await collect(viaA, 'GetMetadataDelta', delta) };
  assert.ok(fromA.allocated.length >= 2 && fromA.delta.length >= 2, `several pages from A (${fromA.allocated.length} allocated, ${fromA.delta.length} delta)`);
  const fromB = { allocated: await collect(viaB, 'GetMetadataAllocated', allocated), delta: await collect(viaB, 'GetMetadataDelta', delta) };
  assert.deepEqual(fromB.allocated.map((m) => m.toString('hex')), fromA.allocated.map((m) => m.toString('hex')), 'allocated: the same responses, byte for byte');
  assert.deepEqual(fromB.delta.map((m) => m.toString('hex')), fromA.delta.map((m) => m.toString('hex')), 'delta: the same responses, byte for byte');
  // From an offset in the middle: the peer gets the request as the caller sent it.
  const later = { snapshot_id: first, starting_offset: SIZE / 2, max_results: 3 };
  assert.deepEqual((await collect(viaB, 'GetMetadataAllocated', later)).map((m) => m.toString('hex')), (await collect(viaA, 'GetMetadataAllocated', later)).map((m) => m.toString('hex')));
  process.stdout.write(`forwarding: ${fromB.allocated.length} allocated and ${fromB.delta.length} delta pages through node-b, identical to node-a's\n`);

  // The peer's errors come back with their code, naming the node that gave them.
  const missingOnA = `${id}-${nodeTag('node-a')}00000000`;
  const notFound = await rejection(collect(viaB, 'GetMetadataAllocated', { snapshot_id: missingOnA, starting_offset: 0, max_results: 0 }));
  assert.equal(notFound.code, status.NOT_FOUND);
  assert.match(notFound.details, /node node-a: no snapshot/);
  const pastEnd = await rejection(collect(viaB, 'GetMetadataAllocated', { snapshot_id: first, starting_offset: SIZE, max_results: 0 }));
  assert.equal(pastEnd.code, status.OUT_OF_RANGE);
  // An id with B's own tag that B lacks is B's NOT_FOUND: nothing is forwarded.
  const missingOnB = `${id}-${nodeTag('node-b')}00000000`;
  const own = await rejection(collect(viaB, 'GetMetadataAllocated', { snapshot_id: missingOnB, starting_offset: 0, max_results: 0 }));
  assert.equal(own.code, status.NOT_FOUND);
  assert.doesNotMatch(own.details, /node node-a/);

  // A's peer endpoint: with the member certificate it answers from A's snapshots only.
  const peerA = `127.0.0.1:${peerPort}`;
  const tls = (cert?: { cert: string; key: string }): ChannelCredentials =>
    credentials.createSsl(readFileSync(path.join(tlsDir, 'ca.crt')), cert ? readFileSync(cert.key) : null, cert ? readFileSync(cert.cert) : null);
  const named = { 'grpc.ssl_target_name_override': 'llraid-member', 'grpc.default_authority': 'llraid-member' };
  const member = rawClient(peerA, tls({ cert: path.join(tlsDir, 'tls.crt'), key: path.join(tlsDir, 'tls.key') }), named);
  t.after(() => member.close());
  assert.deepEqual((await collect(member, 'GetMetadataAllocated', allocated)).map((m) => m.toString('hex')), fromA.allocated.map((m) => m.toString('hex')));
  // A call for B's snapshot reaching A's peer endpoint is not sent back to B (no loops).
  const loop = await rejection(collect(member, 'GetMetadataAllocated', { snapshot_id: missingOnB, starting_offset: 0, max_results: 0 }));
  assert.equal(loop.code, status.NOT_FOUND);
  assert.doesNotMatch(loop.details, /node node-b/);
  // Without a client certificate, or with one of another CA: refused in the handshake.
  for (const [what, creds] of [
    ['no client certificate', tls()],
    ['a certificate of another CA', tls(certs.rogue.client)],
  ] as const) {
    const c = rawClient(peerA, creds, named);
    const err = await rejection(collect(c, 'GetMetadataAllocated', allocated));
    c.close();
    assert.equal(err.code, status.UNAVAILABLE, `${what}: refused (${err.details})`);
  }

  // A's plugin gone: B names the node it cannot reach.
  await a.stop();
  const away = await rejection(collect(viaB, 'GetMetadataDelta', delta));
  assert.equal(away.code, status.UNAVAILABLE);
  assert.match(away.details, /node node-a, which holds snapshot .* is unavailable at 127\.0\.0\.1:\d+: the connection failed/);
});
