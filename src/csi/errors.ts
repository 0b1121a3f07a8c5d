// Typed errors of the CSI layer and the one place where any llraid error becomes a gRPC status.
// Services throw CsiError (or let md/block/exec errors through); grpc-service.ts calls toStatus.

import { status as GrpcStatus } from '@grpc/grpc-js';
import { BlockError } from '../block/errors.js';
import { MdError } from '../md/index.js';

/** The gRPC codes the CSI spec prescribes, by the names the spec uses. */
export type CsiErrorCode =
  | 'INVALID_ARGUMENT'
  | 'NOT_FOUND'
  | 'ALREADY_EXISTS'
  | 'RESOURCE_EXHAUSTED'
  | 'FAILED_PRECONDITION'
  | 'ABORTED'
  | 'OUT_OF_RANGE'
  | 'UNAVAILABLE'
  | 'UNIMPLEMENTED'
  | 'INTERNAL';

export class CsiError extends Error {
  readonly code: CsiErrorCode;
  constructor(code: CsiErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = 'CsiError';
  }
}

/** A helper command (mount, mkfs, nbdfuse, ...) failed or could not start. */
export class CommandError extends Error {
  readonly code = 'ECOMMAND';
  constructor(
    message: string,
    readonly exitCode: number | null,
    readonly stderr: string,
  ) {
    super(message);
    this.name = 'CommandError';
  }
}

export const invalid = (message: string): CsiError => new CsiError('INVALID_ARGUMENT', message);
export const notFound = (message: string): CsiError => new CsiError('NOT_FOUND', message);

const mdCodes: Record<string, CsiErrorCode> = {
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

const blockCodes: Record<string, CsiErrorCode> = {
  ENOSPC: 'RESOURCE_EXHAUSTED',
  EINVAL: 'INVALID_ARGUMENT',
  ERANGE: 'OUT_OF_RANGE',
  // A member held by another opener: the CO retries (an engine still stopping lets go soon).
  EBUSY: 'ABORTED',
  ETIMEDOUT: 'UNAVAILABLE',
};

/** Maps any error to a gRPC status code and a message; unknown errors are INTERNAL. */
export function toStatus(err: unknown): { code: GrpcStatus; details: string } {
  let code: CsiErrorCode = 'INTERNAL';
  let message = err instanceof Error ? err.message : String(err);
  if (err instanceof CsiError) code = err.code;
  else if (err instanceof MdError) {
    code = mdCodes[err.code] ?? 'INTERNAL';
    message = `${message} (${err.code})`;
  } else if (err instanceof BlockError) {
    code = blockCodes[err.code] ?? 'INTERNAL';
    message = `${message} (${err.code})`;
  } else if (err instanceof CommandError) {
    code = 'INTERNAL';
  } else {
    const e = err as NodeJS.ErrnoException;
    if (e?.code === 'ENOSPC') code = 'RESOURCE_EXHAUSTED';
    else if (e?.code === 'ENOENT' || e?.code === 'EACCES') code = 'FAILED_PRECONDITION';
  }
  return { code: GrpcStatus[code], details: message };
}
