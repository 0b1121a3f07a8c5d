// Adapts the CSI service objects (async method(request) → response) to grpc-js handlers. This is
// the CSI layer's error boundary: every thrown error becomes a gRPC status here, via toStatus.

import { status as GrpcStatus, type sendUnaryData, type ServerUnaryCall, type ServerWritableStream, type UntypedServiceImplementation } from '@grpc/grpc-js';
import { LlraidError } from '../common/llraid-error.js';
import { describeError, trace } from '../common/trace.js';
import { csiCode, RelayedStatusError, statusDetails } from './errors.js';

/** Maps any error to a gRPC status code and a message; unknown errors are INTERNAL. */
export function toStatus(err: unknown): { code: GrpcStatus; details: string } {
  // Another node's status, already a gRPC one: passed on, not mapped a second time.
  if (err instanceof RelayedStatusError) return { code: err.grpcCode as GrpcStatus, details: err.message };
  return { code: GrpcStatus[csiCode(err)], details: statusDetails(err) };
}

export type CsiHandler = (request: never) => Promise<object>;
/**
 * What a streaming method knows of its call: `signal` aborts when the client cancels (or its
 * deadline passes, which grpc-js reports as a cancellation); `deadline` is the client's, in ms
 * since the epoch (Infinity: none). A method that calls on (a forwarded call) passes both on.
 */
export interface CallContext {
  signal: AbortSignal;
  deadline: number;
}

/** A server-streaming method: its responses, in order; a throw ends the stream with a status. */
export type CsiStreamHandler = (request: never, context: CallContext) => AsyncIterable<object>;

export interface CallLog {
  /** `subject`: what the call named and made (describeCall, madeBy), '' for neither. */
  (method: string, ms: number, error: { code: number; details: string } | undefined, subject: string): void;
}

export function toGrpcImplementation(
  service: Record<string, CsiHandler | CsiStreamHandler>,
  methods: string[],
  log?: CallLog,
  streaming: ReadonlySet<string> = new Set(),
): UntypedServiceImplementation {
  const impl: UntypedServiceImplementation = {};
  for (const name of methods) {
    const method = service[name];
    if (!method) continue;
    // Bound: the services are class instances, and grpc-js calls handlers as plain functions.
    const handler = method.bind(service);
    if (streaming.has(name)) {
      impl[name] = (call: ServerWritableStream<unknown, unknown>) => void stream(name, handler as CsiStreamHandler, call, log);
      continue;
    }
    impl[name] = (call: ServerUnaryCall<unknown, unknown>, callback: sendUnaryData<unknown>) => {
      const started = Date.now();
      trace('csi', 'debug', () => `${name}${describeCall(call.request)}`);
      (handler as (r: unknown) => Promise<object>)(call.request).then(
        (response) => {
          log?.(name, Date.now() - started, undefined, `${describeCall(call.request)}${madeBy(call.request, response)}`);
          callback(null, response);
        },
        (err: unknown) => {
          const s = toStatus(err);
          // The log line has the status; the trace has what the status hides: the error's
          // family and causes, and the stack of an error that is no llraid error (a bug).
          trace('csi', s.code === GrpcStatus.INTERNAL ? 'error' : 'info', () => `${name}${describeCall(call.request)} failed: ${describeFailure(err)}`);
          log?.(name, Date.now() - started, s, describeCall(call.request));
          callback({ code: s.code, details: s.details, name: 'CsiError', message: s.details });
        },
      );
    };
  }
  return impl;
}

/**
 * Writes a streaming method's responses as they come, respecting the client's flow control, and
 * ends the call with OK or with the status of the error that stopped it.
 */
async function stream(name: string, handler: CsiStreamHandler, call: ServerWritableStream<unknown, unknown>, log?: CallLog): Promise<void> {
  const started = Date.now();
  trace('csi', 'debug', () => `${name}${describeCall(call.request)}`);
  const cancelled = new AbortController();
  call.once('cancelled', () => cancelled.abort());
  const deadline = call.getDeadline();
  const context: CallContext = { signal: cancelled.signal, deadline: deadline instanceof Date ? deadline.getTime() : deadline };
  try {
    for await (const response of (handler as (r: unknown, c: CallContext) => AsyncIterable<object>)(call.request, context)) {
      if (call.cancelled) return;
      // A client that cancels stops reading: the drain it would give never comes.
      if (!call.write(response)) {
        await new Promise((resolve) => {
          call.once('drain', resolve);
          cancelled.signal.addEventListener('abort', resolve, { once: true });
        });
      }
    }
    log?.(name, Date.now() - started, undefined, describeCall(call.request));
    call.end();
  } catch (err) {
    const s = toStatus(err);
    trace('csi', s.code === GrpcStatus.INTERNAL ? 'error' : 'info', () => `${name}${describeCall(call.request)} failed: ${describeFailure(err)}`);
    log?.(name, Date.now() - started, s, describeCall(call.request));
    call.emit('error', { code: s.code, details: s.details, name: 'CsiError', message: s.details });
  }
}

/** The fields of a CSI request that say what it is about (never its secrets or parameters). */
const CALL_FIELDS = ['name', 'volume_id', 'source_volume_id', 'node_id', 'staging_target_path', 'target_path', 'volume_path', 'snapshot_id', 'base_snapshot_id', 'target_snapshot_id'];

function describeCall(request: unknown): string {
  if (typeof request !== 'object' || request === null) return '';
  const r = request as Record<string, unknown>;
  const parts = CALL_FIELDS.filter((f) => typeof r[f] === 'string' && r[f] !== '').map((f) => `${f}=${String(r[f])}`);
  return parts.length > 0 ? ` ${parts.join(' ')}` : '';
}

/** The volume or snapshot a response names that its request did not (CreateVolume's, CreateSnapshot's): ' → volume <id>'. */
function madeBy(request: unknown, response: unknown): string {
  const q = request as { volume_id?: unknown; snapshot_id?: unknown } | null;
  const r = response as { volume?: { volume_id?: unknown }; snapshot?: { snapshot_id?: unknown } } | null;
  const volume = r?.volume?.volume_id;
  if (typeof volume === 'string' && volume !== q?.volume_id) return ` → volume ${volume}`;
  const snapshot = r?.snapshot?.snapshot_id;
  if (typeof snapshot === 'string' && snapshot !== q?.snapshot_id) return ` → snapshot ${snapshot}`;
  return '';
}

/** An error with its name, code and causes; with its stack when it is no llraid error. */
function describeFailure(err: unknown): string {
  const parts: string[] = [];
  for (let e: unknown = err, depth = 0; e !== undefined && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const what = e instanceof Error ? `${e.name}: ${describeError(e)}` : String(e);
    parts.push(e instanceof Error && !(e instanceof LlraidError) ? (e.stack ?? what) : what);
    if (!(e instanceof Error)) break;
  }
  return parts.join('; caused by ');
}
