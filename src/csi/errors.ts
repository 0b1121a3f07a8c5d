// Typed errors of the CSI layer and the one place where any llraid error gets its CSI code.
// Services throw CsiError (or let md/block/engine/exec errors through); grpc-service.ts turns
// csiCode into the gRPC status, and the engine host replies with it. One table per error family
// below, each a Record over that family's codes: a new code does not compile until it has a
// status here. (No grpc-js import: the CLI loads this file for its codes, and grpc-js costs
// 150 ms to load.)

import { BlockError, type BlockErrorCode } from '../block/errors.js';
import { SocketPathError, type SocketPathErrorCode } from '../block/socket-file.js';
import { LlraidError } from '../common/llraid-error.js';
import { EngineError } from '../engine/control/client.js';
import type { ControlErrorCode } from '../engine/control/protocol.js';
import { SupervisorError, type SupervisorErrorCode } from '../engine/errors.js';
import { K8sError, type K8sErrorCode } from '../k8s/errors.js';
import { MdError, type MdErrorCode } from '../md/index.js';
import { NbdError, type NbdErrorCode } from '../nbd/errors.js';
import { SizeError, type SizeErrorCode } from '../units/byte-sizes.js';

/** The gRPC codes the CSI spec prescribes, by the names the spec uses. */
export const CSI_ERROR_CODES = [
  'INVALID_ARGUMENT',
  'NOT_FOUND',
  'ALREADY_EXISTS',
  'RESOURCE_EXHAUSTED',
  'FAILED_PRECONDITION',
  'ABORTED',
  'OUT_OF_RANGE',
  'UNAVAILABLE',
  'UNIMPLEMENTED',
  'INTERNAL',
] as const;
export type CsiErrorCode = (typeof CSI_ERROR_CODES)[number];

export class CsiError extends LlraidError<CsiErrorCode> {}

/** A helper command (mount, mkfs, nbdfuse, ...) failed or could not start. */
export class CommandError extends LlraidError<'ECOMMAND'> {
  constructor(
    message: string,
    readonly exitCode: number | null,
    readonly stderr: string,
  ) {
    super('ECOMMAND', message);
  }
}

/**
 * The status another node's plugin ended a forwarded call with (snapshot-metadata-forwarder.ts),
 * passed on to the caller with its gRPC code as it came: grpc-service's toStatus does not map it.
 * Its code may be one the CSI list above lacks (CANCELLED, DEADLINE_EXCEEDED from the peer's side).
 */
export class RelayedStatusError extends LlraidError<'ERELAYED'> {
  constructor(readonly grpcCode: number, message: string) {
    super('ERELAYED', message);
  }
}

export const invalid = (message: string): CsiError => new CsiError('INVALID_ARGUMENT', message);
export const notFound = (message: string): CsiError => new CsiError('NOT_FOUND', message);

export const BLOCK_STATUS: Record<BlockErrorCode, CsiErrorCode> = {
  EIO: 'INTERNAL',
  EINVAL: 'INVALID_ARGUMENT',
  ERANGE: 'OUT_OF_RANGE',
  // A pool directory on a read-only filesystem, O_DIRECT or discard refused: the node's doing.
  EROFS: 'INTERNAL',
  ENOSPC: 'RESOURCE_EXHAUSTED',
  ENOTSUP: 'INTERNAL',
  // A member held by another opener: the CO retries (an engine still stopping lets go soon).
  EBUSY: 'ABORTED',
  ETIMEDOUT: 'UNAVAILABLE',
  ESHUTDOWN: 'INTERNAL',
  // The volume's owner changed: this node no longer holds it, the CO must not retry here.
  EFENCED: 'FAILED_PRECONDITION',
};

export const SOCKET_PATH_STATUS: Record<SocketPathErrorCode, CsiErrorCode> = {
  // Something that is not a socket sits where one must go: it stays until someone removes it.
  ENOTSOCK: 'FAILED_PRECONDITION',
  // Another server still listens there; it may be going away.
  EADDRINUSE: 'ABORTED',
};

export const MD_STATUS: Record<MdErrorCode, CsiErrorCode> = {
  EBADMETA: 'INTERNAL',
  EUUID: 'FAILED_PRECONDITION',
  ESTALE: 'FAILED_PRECONDITION',
  ENODEV: 'FAILED_PRECONDITION',
  EINVAL: 'INVALID_ARGUMENT',
  EIO: 'INTERNAL',
  EBUSY: 'ABORTED',
  ENOSPC: 'RESOURCE_EXHAUSTED',
  ENOTSUP: 'INVALID_ARGUMENT',
  EOVERFLOW: 'FAILED_PRECONDITION',
  EEXIST: 'ALREADY_EXISTS',
};

/**
 * A volume's engine refused a control request (grow, status) with an md or block code; where the
 * two families share a code, md's meaning wins, since the engine's requests are md operations.
 */
export const ENGINE_STATUS: Record<ControlErrorCode, CsiErrorCode> = {
  ...BLOCK_STATUS,
  ...MD_STATUS,
  // No engine answers on the volume's control socket (it died; the supervisor restarts it).
  ECONNREFUSED: 'UNAVAILABLE',
  EPROTO: 'INTERNAL',
};

/** The supervisor could not start or stop a volume's engine (its log says why). */
export const SUPERVISOR_STATUS: Record<SupervisorErrorCode, CsiErrorCode> = {
  ESTART: 'INTERNAL',
  ESTOP: 'INTERNAL',
};

export const NBD_STATUS: Record<NbdErrorCode, CsiErrorCode> = {
  NBD_PROTOCOL: 'INTERNAL',
  NBD_CLOSED: 'UNAVAILABLE',
  NBD_EXPORT: 'INTERNAL',
  NBD_LISTEN: 'UNAVAILABLE',
  NBD_LIMITS: 'INTERNAL',
  NBD_REMOTE: 'INTERNAL',
  // Remote members (issue 13): a URI in a parameter, a member service that is away or refuses.
  NBD_URI: 'INVALID_ARGUMENT',
  NBD_CONNECT: 'UNAVAILABLE',
  NBD_TLS: 'FAILED_PRECONDITION',
  NBD_NO_EXPORT: 'NOT_FOUND',
  NBD_NOT_MEMBER: 'FAILED_PRECONDITION',
};

export const K8S_STATUS: Record<K8sErrorCode, CsiErrorCode> = {
  // A snapshot the driver built is not valid: llraid's bug, not the caller's argument.
  EINVAL: 'INTERNAL',
  EAPI: 'INTERNAL',
  // Another node changed the RaidVolume first (ownership); the caller retries, then gives up.
  CONFLICT: 'ABORTED',
  EUNREACHABLE: 'UNAVAILABLE',
  ECLOSED: 'UNAVAILABLE',
  ELISTEN: 'INTERNAL',
};

/** A size in a parameter or the config that is not one (parameters.ts names which). */
export const SIZE_STATUS: Record<SizeErrorCode, CsiErrorCode> = {
  EINVAL: 'INVALID_ARGUMENT',
};

/** The CSI code of any error; unknown errors are INTERNAL. */
export function csiCode(err: unknown): CsiErrorCode {
  if (err instanceof CsiError) return err.code;
  if (err instanceof MdError) return MD_STATUS[err.code];
  if (err instanceof BlockError) return BLOCK_STATUS[err.code];
  if (err instanceof EngineError) return ENGINE_STATUS[err.code];
  if (err instanceof SupervisorError) return SUPERVISOR_STATUS[err.code];
  if (err instanceof SocketPathError) return SOCKET_PATH_STATUS[err.code];
  if (err instanceof NbdError) return NBD_STATUS[err.code];
  if (err instanceof K8sError) return K8S_STATUS[err.code];
  if (err instanceof SizeError) return SIZE_STATUS[err.code];
  if (err instanceof LlraidError) return 'INTERNAL'; // CommandError, and any family not above
  const e = err as NodeJS.ErrnoException;
  if (e?.code === 'ENOSPC') return 'RESOURCE_EXHAUSTED';
  if (e?.code === 'ENOENT' || e?.code === 'EACCES') return 'FAILED_PRECONDITION';
  return 'INTERNAL';
}

/** The message of any error for a status: other layers' codes stay visible ("(EBUSY)" says more than ABORTED alone). */
export function statusDetails(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  return err instanceof LlraidError && !(err instanceof CsiError) && !(err instanceof CommandError) ? `${message} (${err.code})` : message;
}
