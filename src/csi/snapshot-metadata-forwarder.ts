// Changed-block tracking across nodes: the chart puts one Service in front of every node's
// snapshot-metadata sidecar, so a call can reach a plugin that does not hold the snapshot. That
// plugin forwards the call to the holder's peer endpoint (snapshot-metadata-peer.ts) and relays
// the answer stream back as it comes. The holder is the node whose tag the snapshot id carries
// (snapshot-store.ts), found among the nodes with a Lease, at its member service's host; the
// connection presents and checks the member service's certificate (one CA for the cluster).

import { readFileSync } from 'node:fs';
import { connectivityState, credentials, makeGenericClientConstructor, status as GrpcStatus, type Client, type ClientReadableStream, type ServiceError } from '@grpc/grpc-js';
import { CsiError, RelayedStatusError } from './errors.js';
import type { CallContext } from './grpc-service.js';
import { MEMBER_TLS_NAME } from './member-tls.js';
import { serviceDefinition } from './proto.js';
import type { MetadataMethod, MetadataResponse, PeerNode, SnapshotForwarding } from './snapshot-metadata-server.js';
import { nodeTag, snapshotNodeTag } from './snapshot-store.js';
import type { SnapshotMetadataPeerConfig } from './config.js';

/** Where the other nodes are: every node with a Lease and its member service's `host:port`. */
export interface PeerDirectory {
  knownNodes(): Promise<{ node: string; memberService: string }[]>;
}

type MetadataClient = Client & Record<MetadataMethod, (request: object, options: { deadline: number }) => ClientReadableStream<MetadataResponse>>;

export class SnapshotMetadataForwarder implements SnapshotForwarding {
  /** One channel per peer address, made on first use; dropped when a call finds it unreachable. */
  private readonly clients = new Map<string, MetadataClient>();
  private readonly ownTag: string;

  constructor(
    private readonly o: {
      /** This node's name. */
      node: string;
      /** The peer endpoint's port and TLS files (the same port on every node). */
      peer: SnapshotMetadataPeerConfig;
      directory: PeerDirectory;
      /**
       * How long a peer may take to accept the connection (TCP and TLS) before the call is
       * UNAVAILABLE naming it (default 10 s): a node that is down or cut off drops packets, and
       * without a bound the caller would only see its own deadline pass, not which node failed.
       */
      connectTimeoutMs?: number;
    },
  ) {
    this.ownTag = nodeTag(o.node);
  }

  async route(id: string): Promise<PeerNode[]> {
    const tag = snapshotNodeTag(id);
    if (tag === undefined || tag === this.ownTag) return [];
    let nodes: { node: string; memberService: string }[];
    try {
      nodes = await this.o.directory.knownNodes();
    } catch (err) {
      throw new CsiError('UNAVAILABLE', `snapshot ${id} is not on node ${this.o.node}, and the nodes that could hold it cannot be listed: ${(err as Error).message}`, { cause: err });
    }
    return nodes
      .filter((n) => n.node !== this.o.node && nodeTag(n.node) === tag)
      .map((n) => ({ node: n.node, address: peerAddress(n.memberService, this.o.peer.port) }));
  }

  /**
   * Two node names sharing a tag (2^-32 per pair) are tried in order: a NOT_FOUND before any
   * response means "not mine", so the next is asked; any other end is the answer.
   */
  async *relay(method: MetadataMethod, request: object, peers: PeerNode[], context: CallContext): AsyncGenerator<MetadataResponse> {
    for (const [i, peer] of peers.entries()) {
      let relayed = 0;
      try {
        for await (const response of this.call(method, request, peer, context)) {
          relayed++;
          yield response;
        }
        return;
      } catch (err) {
        const last = i === peers.length - 1;
        if (!last && relayed === 0 && err instanceof RelayedStatusError && err.grpcCode === GrpcStatus.NOT_FOUND) continue;
        throw err;
      }
    }
  }

  private async *call(method: MetadataMethod, request: object, peer: PeerNode, context: CallContext): AsyncGenerator<MetadataResponse> {
    const client = this.client(peer.address);
    await this.connected(client, peer, request, context);
    const call = client[method](request, { deadline: context.deadline });
    // The caller's cancellation (or its deadline, which grpc-js reports as one) cancels the
    // forwarded call at once, even while no response is on its way.
    const cancel = (): void => call.cancel();
    context.signal.addEventListener('abort', cancel, { once: true });
    try {
      for await (const response of call) yield response as MetadataResponse;
    } catch (err) {
      throw this.relayedError(err as ServiceError, peer, request);
    } finally {
      context.signal.removeEventListener('abort', cancel);
      // Ends a call the caller stopped reading; a call that ended already ignores it.
      call.cancel();
    }
  }

  /**
   * Resolves once the channel to `peer` is up. A refused or failed connection (the channel's
   * TRANSIENT_FAILURE) is UNAVAILABLE at once; one that is neither up nor failed within the
   * connect timeout (or the caller's deadline, if sooner) is UNAVAILABLE then.
   */
  private connected(client: MetadataClient, peer: PeerNode, request: object, context: CallContext): Promise<void> {
    const waitMs = Math.min(this.o.connectTimeoutMs ?? 10_000, context.deadline - Date.now());
    const by = Date.now() + waitMs;
    const channel = client.getChannel();
    return new Promise<void>((resolve, reject) => {
      const done = (err?: Error): void => {
        context.signal.removeEventListener('abort', cancelled);
        if (err) reject(err);
        else resolve();
      };
      const cancelled = (): void => done(new RelayedStatusError(GrpcStatus.CANCELLED, `cancelled by the caller while connecting to node ${peer.node} at ${peer.address}`));
      context.signal.addEventListener('abort', cancelled, { once: true });
      const look = (): void => {
        if (context.signal.aborted) return;
        const state = channel.getConnectivityState(true);
        if (state === connectivityState.READY) return done();
        if (state === connectivityState.TRANSIENT_FAILURE || state === connectivityState.SHUTDOWN) {
          return done(this.unavailable(peer, request, 'the connection failed (refused, reset, or a TLS handshake that did not verify)'));
        }
        channel.watchConnectivityState(state, by, (err) => (err ? done(this.unavailable(peer, request, `no connection within ${Math.round(waitMs)} ms`)) : look()));
      };
      look();
    });
  }

  /** The peer's status with its code as it came, its details naming the node that gave them. */
  private relayedError(err: ServiceError, peer: PeerNode, request: object): RelayedStatusError {
    const code = typeof err.code === 'number' ? err.code : GrpcStatus.UNKNOWN;
    if (code === GrpcStatus.UNAVAILABLE) return this.unavailable(peer, request, err.details ?? err.message);
    return new RelayedStatusError(code, `node ${peer.node}: ${err.details ?? err.message}`);
  }

  private unavailable(peer: PeerNode, request: object, why: string): RelayedStatusError {
    // A new channel for the next call: this one may wait out a reconnect backoff.
    this.clients.get(peer.address)?.close();
    this.clients.delete(peer.address);
    const ids = ['snapshot_id', 'base_snapshot_id', 'target_snapshot_id']
      .map((f) => (request as Record<string, unknown>)[f])
      .filter((v): v is string => typeof v === 'string' && v !== '');
    return new RelayedStatusError(GrpcStatus.UNAVAILABLE, `node ${peer.node}, which holds snapshot ${ids.join(' and ')}, is unavailable at ${peer.address}: ${why}`);
  }

  private client(address: string): MetadataClient {
    let client = this.clients.get(address);
    if (!client) {
      const { tls } = this.o.peer;
      // Read at each new channel, so a renewed Secret is used without a restart.
      const creds = credentials.createSsl(readFileSync(tls.ca), readFileSync(tls.key), readFileSync(tls.cert));
      const Ctor = makeGenericClientConstructor(serviceDefinition('SnapshotMetadata'), 'SnapshotMetadata');
      // Peers are dialled by IP and present the cluster's one certificate, named llraid-member.
      client = new Ctor(address, creds, { 'grpc.ssl_target_name_override': MEMBER_TLS_NAME, 'grpc.default_authority': MEMBER_TLS_NAME }) as unknown as MetadataClient;
      this.clients.set(address, client);
    }
    return client;
  }

  close(): void {
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
  }
}

/** The peer endpoint of a node whose member service is at `memberService` (`host:port`, `[v6]:port`). */
export function peerAddress(memberService: string, port: number): string {
  const host = memberService.slice(0, memberService.lastIndexOf(':'));
  return `${host}:${port}`;
}
