// Typed errors of the block layer. Every layer above maps these exactly once:
// md turns EIO into a failed member, NBD into an NBD error number, CSI into a gRPC code.

import { LlraidError } from '../common/llraid-error.js';

export const BLOCK_ERROR_CODES = [
  'EIO', // the device failed the request; its contents at that range are unknown
  'EINVAL', // the request is malformed (negative length, misaligned where alignment is required)
  'ERANGE', // the request reaches outside the device
  'EROFS', // the device is read-only
  'ENOSPC', // the backing store has no room left
  'ENOTSUP', // the device cannot do this operation
  'EBUSY', // another opener holds the device exclusively
  'ETIMEDOUT', // the device did not answer within its deadline (and is not asked again)
  'ESHUTDOWN', // the device is closed (or lost power, for a fault-injecting device)
  'EFENCED', // another engine took the device with a higher attach epoch: stop, do not go on without it
] as const;
export type BlockErrorCode = (typeof BLOCK_ERROR_CODES)[number];

export class BlockError extends LlraidError<BlockErrorCode> {}

export class IoError extends BlockError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('EIO', message, options);
  }
}

export class OutOfRangeError extends BlockError {
  constructor(message: string) {
    super('ERANGE', message);
  }
}

export class InvalidRequestError extends BlockError {
  constructor(message: string) {
    super('EINVAL', message);
  }
}

export class ReadOnlyError extends BlockError {
  constructor(message: string) {
    super('EROFS', message);
  }
}

export class NoSpaceError extends BlockError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ENOSPC', message, options);
  }
}

export class NotSupportedError extends BlockError {
  constructor(message: string) {
    super('ENOTSUP', message);
  }
}

export class BusyError extends BlockError {
  constructor(message: string) {
    super('EBUSY', message);
  }
}

export class TimeoutError extends BlockError {
  constructor(message: string) {
    super('ETIMEDOUT', message);
  }
}

export class ShutdownError extends BlockError {
  constructor(message: string) {
    super('ESHUTDOWN', message);
  }
}

/**
 * The device was taken by another engine with a higher attach epoch (DESIGN.md §8): this engine
 * no longer owns the volume. Unlike EIO it does not fail the member: the array stops
 * acknowledging writes at once, since going on degraded is how split brain starts.
 */
export class FencedError extends BlockError {
  constructor(message: string) {
    super('EFENCED', message);
  }
}

export function isBlockError(err: unknown, code?: BlockErrorCode): err is BlockError {
  return err instanceof BlockError && (code === undefined || err.code === code);
}
