// The peer endpoint of changed-block tracking: the SnapshotMetadata service, and nothing else, on
// the node's IP for other nodes' plugins to forward calls to (snapshot-metadata-forwarder.ts).
// gRPC over TLS with a client certificate required: a client must present one the member
// service's CA signed, as every node does (the chart's one certificate, llraid-member). The
// public path (the sidecar on the CSI socket) checks the backup application's token; this path
// checks that the caller is a node, which checked the token before it forwarded.
//
// It serves a SnapshotMetadataServer without forwarding, so a forwarded call is answered from
// this node's snapshots or refused: never forwarded again, whatever the ids say (no loops).

import { readFileSync } from 'node:fs';
import { Server, ServerCredentials } from '@grpc/grpc-js';
import type { SnapshotMetadataPeerConfig } from './config.js';
import { CsiError } from './errors.js';
import { toGrpcImplementation, type CallLog, type CsiHandler } from './grpc-service.js';
import { serviceDefinition } from './proto.js';
import type { SnapshotMetadataServer } from './snapshot-metadata-server.js';

export interface PeerEndpoint {
  /** `host:port` it listens on (the port the system chose when config.port is 0). */
  address: string;
  close(): Promise<void>;
}

export async function startPeerEndpoint(config: SnapshotMetadataPeerConfig, local: SnapshotMetadataServer, log?: CallLog): Promise<PeerEndpoint> {
  const files = (() => {
    try {
      return { ca: readFileSync(config.tls.ca), cert: readFileSync(config.tls.cert), key: readFileSync(config.tls.key) };
    } catch (err) {
      throw new CsiError('FAILED_PRECONDITION', `snapshot metadata peer endpoint: cannot read the TLS files of ${config.tls.dir} (LLRAID_TLS_DIR): ${(err as Error).message}`);
    }
  })();
  // checkClientCertificate: the handshake fails without a certificate the CA signed.
  const creds = ServerCredentials.createSsl(files.ca, [{ cert_chain: files.cert, private_key: files.key }], true);
  const server = new Server();
  const def = serviceDefinition('SnapshotMetadata');
  const methods = Object.keys(def);
  server.addService(def, toGrpcImplementation(local as unknown as Record<string, CsiHandler>, methods, log, new Set(methods)));
  const host = config.host.includes(':') ? `[${config.host}]` : config.host;
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`${host}:${config.port}`, creds, (err, p) => (err ? reject(err) : resolve(p))),
  ).catch((err: unknown) => {
    throw new CsiError('FAILED_PRECONDITION', `snapshot metadata peer endpoint: cannot listen on ${host}:${config.port}: ${(err as Error).message}`);
  });
  return {
    address: `${host}:${port}`,
    close: () => new Promise<void>((resolve) => server.tryShutdown(() => resolve())),
  };
}
