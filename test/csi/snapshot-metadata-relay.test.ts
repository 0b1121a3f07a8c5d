// How a forwarded SnapshotMetadata call is relayed, against a stand-in peer that shows what it
// receives: a real gRPC server with the peer endpoint's mutual TLS (the chart's kind of member
// certificate) whose handlers are the test's. The forwarding side is the plugin's own code
// (SnapshotMetadataServer with a SnapshotMetadataForwarder) served on a unix socket as the driver
// serves it. Shown: responses reach the client while the peer's stream is still open (relayed as
// they come, not collected); the client's deadline reaches the peer; the client's cancellation
// cancels the peer's call; a peer status outside the CSI codes comes back with its code; a peer
// that accepts the connection and never answers, and one presenting a certificate of another CA
// (named llraid-member), are UNAVAILABLE naming their node (the latter never sees the request).

import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import {
  credentials, makeGenericClientConstructor, Server, ServerCredentials, status,
  type Client, type ClientReadableStream, type ServerWritableStream, type ServiceError, type UntypedServiceImplementation,
} from '@grpc/grpc-js';
import { resolveConfig } from '../../src/csi/config.js';
import { toGrpcImplementation, type CsiHandler } from '../../src/csi/grpc-service.js';
import { serviceDefinition } from '../../src/csi/proto.js';
import { SnapshotMetadataForwarder } from '../../src/csi/snapshot-metadata-forwarder.js';
import { SnapshotMetadataServer } from '../../src/csi/snapshot-metadata-server.js';
import { nodeTag } from '../../src/csi/snapshot-store.js';
import { freePort } from '../nbd/client-helpers.js';
import { makeNamedCert, memberTls } from '../support/certs.js';
import { FakeLiveness } from '../support/fake-replication.js';

type Call = ServerWritableStream<{ snapshot_id: string }, unknown>;
type MetadataClient = Client & Record<'GetMetadataAllocated', (request: object, options?: { deadline?: number }) => ClientReadableStream<{ block_metadata: unknown[] }>>;

interface Stand {
  client: MetadataClient;
  /** The handler of the stand-in peer's GetMetadataAllocated. */
  peer: { handle: (call: Call) => void };
  snapshotId: string;
  /** A snapshot id of node-z, whose peer endpoint accepts connections and never says a word. */
  silentId: string;
  /** A snapshot id of node-w, whose peer endpoint presents a certificate named llraid-member of another CA. */
  rogueId: string;
  /** Calls node-w's endpoint took (none: the handshake must fail on this side). */
  rogueCalls: () => number;
}

async function stand(t: TestContext): Promise<Stand> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'llraid-relay-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const { tlsDir, certs } = await memberTls(dir);

  // The stand-in peer: node-x's peer endpoint.
  const peerPort = await freePort();
  const peer = { handle: (call: Call): void => void call.end() };
  const peerServer = new Server();
  const impl: UntypedServiceImplementation = { GetMetadataAllocated: (call: Call) => peer.handle(call) };
  peerServer.addService(serviceDefinition('SnapshotMetadata'), impl);
  const creds = ServerCredentials.createSsl(readFileSync(certs.ca.cert), [{ cert_chain: readFileSync(path.join(tlsDir, 'tls.crt')), private_key: readFileSync(path.join(tlsDir, 'tls.key')) }], true);
  await new Promise<void>((resolve, reject) => peerServer.bindAsync(`127.0.0.1:${peerPort}`, creds, (err) => (err ? reject(err) : resolve())));
  t.after(() => peerServer.forceShutdown());

  // This node (node-y): nothing of its own, forwarding by the directory.
  const config = resolveConfig({ nodeId: 'node-y', disks: [dir], memberServiceListen: `127.0.0.2:${await freePort()}`, tlsDir, snapshotMetadataPeerPort: String(peerPort) });
  const liveness = new FakeLiveness().live('node-x', `127.0.0.1:${await freePort()}`).live('node-y', '127.0.0.2:1').live('node-z', '127.0.0.3:1').live('node-w', '127.0.0.4:1');
  // node-w: the right name, the wrong CA; it would take this node's certificate, so only this side can refuse.
  const rogueCert = await makeNamedCert(path.join(dir, 'rogue-member'), 'rogue-member', ['DNS:llraid-member'], 'serverAuth,clientAuth', certs.rogue.ca);
  let rogueCalls = 0;
  const rogue = new Server();
  rogue.addService(serviceDefinition('SnapshotMetadata'), { GetMetadataAllocated: (call: Call) => void (rogueCalls++, call.end()) });
  const rogueCreds = ServerCredentials.createSsl(readFileSync(certs.ca.cert), [{ cert_chain: readFileSync(rogueCert.cert), private_key: readFileSync(rogueCert.key) }], false);
  await new Promise<void>((resolve, reject) => rogue.bindAsync(`127.0.0.4:${peerPort}`, rogueCreds, (err) => (err ? reject(err) : resolve())));
  t.after(() => rogue.forceShutdown());
  const sockets: Socket[] = [];
  const silent = createServer((sock) => sockets.push(sock));
  await new Promise<void>((resolve) => silent.listen(peerPort, '127.0.0.3', resolve));
  t.after(() => {
    for (const sock of sockets) sock.destroy();
    silent.close();
  });
  const forwarder = new SnapshotMetadataForwarder({ node: 'node-y', peer: config.snapshotMetadataPeer!, directory: liveness, connectTimeoutMs: 2000 });
  t.after(() => forwarder.close());
  const service = new SnapshotMetadataServer(async () => undefined, forwarder);
  const server = new Server();
  const def = serviceDefinition('SnapshotMetadata');
  server.addService(def, toGrpcImplementation(service as unknown as Record<string, CsiHandler>, Object.keys(def), undefined, new Set(Object.keys(def))));
  const socket = path.join(dir, 'csi.sock');
  await new Promise<void>((resolve, reject) => server.bindAsync(`unix://${socket}`, ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())));
  t.after(() => server.forceShutdown());
  const Ctor = makeGenericClientConstructor(def, 'SnapshotMetadata');
  const client = new Ctor(`unix://${socket}`, credentials.createInsecure()) as unknown as MetadataClient;
  t.after(() => client.close());
  return { client, peer, snapshotId: `${'a'.repeat(32)}-${nodeTag('node-x')}12345678`, silentId: `${'a'.repeat(32)}-${nodeTag('node-z')}12345678`,
    rogueId: `${'a'.repeat(32)}-${nodeTag('node-w')}12345678`, rogueCalls: () => rogueCalls };
}

const page = (offset: number): object => ({ block_metadata_type: 'VARIABLE_LENGTH', volume_capacity_bytes: 1 << 20, block_metadata: [{ byte_offset: offset, size_bytes: 4096 }] });

function until(what: string, check: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  return new Promise((resolve, reject) => {
    const look = (): void => {
      if (check()) resolve();
      else if (Date.now() > end) reject(new Error(`timed out waiting for ${what}`));
      else setTimeout(look, 20);
    };
    look();
  });
}

test('a relayed response reaches the client while the peer still streams; the deadline goes to the peer; a cancel cancels the peer call', { timeout: 60_000 }, async (t) => {
  const s = await stand(t);
  let peerDeadline: number | undefined;
  let peerCancelled = false;
  let seenId = '';
  s.peer.handle = (call) => {
    seenId = call.request.snapshot_id;
    const d = call.getDeadline();
    peerDeadline = d instanceof Date ? d.getTime() : d;
    call.on('cancelled', () => (peerCancelled = true));
    call.write(page(0));
    // ... and no end: the stream stays open until the client goes.
  };
  const deadline = Date.now() + 30_000;
  const call = s.client.GetMetadataAllocated({ snapshot_id: s.snapshotId, starting_offset: 0, max_results: 0 }, { deadline });
  const received: unknown[] = [];
  call.on('data', (m: unknown) => received.push(m));
  call.on('error', () => undefined);
  await until('the first page at the client', () => received.length === 1);
  assert.equal(seenId, s.snapshotId, 'the peer got the request as sent');
  assert.ok(peerDeadline !== undefined && Math.abs(peerDeadline - deadline) < 2000, `the peer's deadline ${peerDeadline} is the client's ${deadline}`);
  assert.equal(peerCancelled, false);
  call.cancel();
  await until('the peer call cancelled', () => peerCancelled);
});

test('a peer status comes back with its code, also one the CSI list lacks, naming the node', { timeout: 60_000 }, async (t) => {
  const s = await stand(t);
  const codes = [status.NOT_FOUND, status.PERMISSION_DENIED, status.RESOURCE_EXHAUSTED, status.DEADLINE_EXCEEDED];
  for (const code of codes) {
    s.peer.handle = (call) => {
      call.write(page(0));
      call.emit('error', { code, details: `peer says ${code}` });
    };
    const call = s.client.GetMetadataAllocated({ snapshot_id: s.snapshotId, starting_offset: 0, max_results: 0 });
    const pages: unknown[] = [];
    const err = await new Promise<ServiceError>((resolve, reject) => {
      call.on('data', (m: unknown) => pages.push(m));
      call.on('error', resolve);
      call.on('end', () => reject(new Error('expected an error')));
    });
    assert.equal(pages.length, 1, 'the page before the error was relayed');
    assert.equal(err.code, code);
    assert.equal(err.details, `node node-x: peer says ${code}`);
  }
});

test('a peer that takes the connection and never answers is UNAVAILABLE naming its node, before the caller\'s deadline', { timeout: 120_000 }, async (t) => {
  const s = await stand(t);
  const started = Date.now();
  const call = s.client.GetMetadataAllocated({ snapshot_id: s.silentId, starting_offset: 0, max_results: 0 }, { deadline: Date.now() + 60_000 });
  const err = await new Promise<ServiceError>((resolve, reject) => {
    call.on('data', () => reject(new Error('expected no response')));
    call.on('error', resolve);
    call.on('end', () => reject(new Error('expected an error')));
  });
  const ms = Date.now() - started;
  assert.equal(err.code, status.UNAVAILABLE, err.details);
  assert.match(err.details, /node node-z, which holds snapshot .* is unavailable at 127\.0\.0\.3:\d+: no connection within 2000 ms/);
  assert.ok(ms >= 1900 && ms < 10_000, `after the connect timeout (${ms} ms), long before the deadline`);
  process.stdout.write(`silent peer: UNAVAILABLE after ${ms} ms: ${err.details}\n`);
});

test('a peer whose certificate another CA signed is not called: UNAVAILABLE naming its node', { timeout: 60_000 }, async (t) => {
  const s = await stand(t);
  const call = s.client.GetMetadataAllocated({ snapshot_id: s.rogueId, starting_offset: 0, max_results: 0 });
  const err = await new Promise<ServiceError>((resolve, reject) => {
    call.on('data', () => reject(new Error('expected no response')));
    call.on('error', resolve);
    call.on('end', () => reject(new Error('expected an error')));
  });
  assert.equal(err.code, status.UNAVAILABLE, err.details);
  assert.match(err.details, /node node-w, which holds snapshot .* is unavailable at 127\.0\.0\.4:\d+: the connection failed/);
  assert.equal(s.rogueCalls(), 0, 'the request never reached it');
});
