// A CSI client over the driver's unix socket, for the calls the kubelet makes and the harness
// makes in its place (NodeGetInfo for the CSINode object, NodeStageVolume/NodeUnstageVolume).
// It speaks the same proto/csi.proto wire contract as the driver and the sidecars.

import * as grpc from '@grpc/grpc-js';
import { serviceDefinition, type CsiServiceName } from '../../src/csi/proto.js';

type Unary = (req: unknown, cb: (err: grpc.ServiceError | null, res: unknown) => void) => void;

export class CsiClient {
  private readonly clients = new Map<CsiServiceName, grpc.Client>();

  constructor(private readonly socketPath: string) {}

  private client(service: CsiServiceName): grpc.Client {
    let c = this.clients.get(service);
    if (!c) {
      const Ctor = grpc.makeClientConstructor(serviceDefinition(service), service);
      c = new Ctor(`unix://${this.socketPath}`, grpc.credentials.createInsecure());
      this.clients.set(service, c);
    }
    return c;
  }

  /** One unary call; a gRPC error is rethrown with the method name in its message. */
  call<T = Record<string, unknown>>(service: CsiServiceName, method: string, request: object, timeoutMs = 60_000): Promise<T> {
    const c = this.client(service) as unknown as Record<string, Unary>;
    const fn = c[method];
    if (!fn) throw new Error(`csi ${service}.${method}: expected a method of csi.proto, found none`);
    return new Promise((resolve, reject) => {
      const deadline = new Date(Date.now() + timeoutMs);
      (fn as unknown as (req: unknown, md: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res: unknown) => void) => void).call(
        c,
        request,
        new grpc.Metadata(),
        { deadline },
        (err, res) => {
          if (err) reject(new Error(`csi ${service}.${method}: ${err.message}`, { cause: err }));
          else resolve(res as T);
        },
      );
    });
  }

  close(): void {
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
  }
}
