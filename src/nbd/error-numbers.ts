// The one place where a failure while serving becomes an NBD error number on the wire.
// BlockErrors map by code (an md array turns its own errors into block errors first); anything
// else is a bug in a device, reported as EIO so that the client sees a failed request rather than
// a dropped connection, and traced.

import { isBlockError, type BlockErrorCode } from '../block/errors.js';
import { trace } from '../common/trace.js';
import { NBD_EINVAL, NBD_EIO, NBD_ENOSPC, NBD_ENOTSUP, NBD_EPERM, NBD_ESHUTDOWN } from './protocol.js';

const BY_CODE: Record<BlockErrorCode, number> = {
  EIO: NBD_EIO,
  EINVAL: NBD_EINVAL,
  // proto.md asks for EINVAL on reads past the end; the connection checks ranges before the
  // device sees them (ENOSPC for writes), so a device ERANGE only reaches here for reads.
  ERANGE: NBD_EINVAL,
  EROFS: NBD_EPERM,
  ENOSPC: NBD_ENOSPC,
  ENOTSUP: NBD_ENOTSUP,
  ESHUTDOWN: NBD_ESHUTDOWN,
  // Only opening a device can be refused as busy; NBD has no such error for a request.
  EBUSY: NBD_EIO,
  ETIMEDOUT: NBD_EIO,
  // An array whose member was fenced: its client sees failed writes (DESIGN.md §8).
  EFENCED: NBD_EIO,
};

export function nbdErrorNumber(err: unknown): number {
  if (isBlockError(err)) return BY_CODE[err.code];
  trace('nbd', 'error', () => `a device failed a request with something other than a block error, answered EIO: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  return NBD_EIO;
}
