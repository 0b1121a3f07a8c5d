// Adapts the CSI service objects (async method(request) → response) to grpc-js handlers. This is
// the CSI layer's error boundary: every thrown error becomes a gRPC status here, via toStatus.

import type { sendUnaryData, ServerUnaryCall, UntypedServiceImplementation } from '@grpc/grpc-js';
import { toStatus } from './errors.js';

export type CsiHandler = (request: never) => Promise<object>;

export interface CallLog {
  (method: string, ms: number, error?: { code: number; details: string }): void;
}

export function toGrpcImplementation(
  service: Record<string, CsiHandler>,
  methods: string[],
  log?: CallLog,
): UntypedServiceImplementation {
  const impl: UntypedServiceImplementation = {};
  for (const name of methods) {
    const handler = service[name];
    if (!handler) continue;
    impl[name] = (call: ServerUnaryCall<unknown, unknown>, callback: sendUnaryData<unknown>) => {
      const started = Date.now();
      (handler as (r: unknown) => Promise<object>)(call.request).then(
        (response) => {
          log?.(name, Date.now() - started);
          callback(null, response);
        },
        (err: unknown) => {
          const s = toStatus(err);
          log?.(name, Date.now() - started, s);
          callback({ code: s.code, details: s.details, name: 'CsiError', message: s.details });
        },
      );
    };
  }
  return impl;
}
