// Typed errors of the md engine. The CLI and CSI map them to their own codes; an array served as
// a BlockDevice turns them into block errors first (asBlockError), so NBD only sees those.

import { BlockError, type BlockErrorCode } from '../block/errors.js';
import { LlraidError } from '../common/llraid-error.js';

export const MD_ERROR_CODES = [
  'EBADMETA', // a superblock or bitmap on a member is corrupt or not ours (wrong magic, checksum, version)
  'EUUID', // a member belongs to another array
  'ESTALE', // a member's events lag the array's
  'ENODEV', // not enough working members for the level
  'EINVAL', // an argument is out of range or inconsistent
  'EIO', // the array could not complete the request (no complete copy left)
  'EBUSY', // the operation conflicts with one in progress
  'ENOSPC', // not enough space (member too small, bitmap does not fit)
  'ENOTSUP', // the level or configuration does not support this
  'EOVERFLOW', // a counter on the members cannot go up any more (events at the top of their u64 field)
  'EEXIST', // a member already carries an llraid superblock
] as const;
export type MdErrorCode = (typeof MD_ERROR_CODES)[number];

export class MdError extends LlraidError<MdErrorCode> {}

/**
 * What an md failure is to a user of the array as a BlockDevice (the NBD server, a filesystem
 * test): the request failed for that reason. Failures that only assembly or a membership change
 * can meet are the array failing the request, EIO.
 */
export const MD_AS_BLOCK_CODE: Record<MdErrorCode, BlockErrorCode> = {
  EBADMETA: 'EIO',
  EUUID: 'EIO',
  ESTALE: 'EIO',
  ENODEV: 'EIO',
  EINVAL: 'EINVAL',
  EIO: 'EIO',
  EBUSY: 'EBUSY',
  ENOSPC: 'ENOSPC',
  ENOTSUP: 'ENOTSUP',
  EOVERFLOW: 'EIO',
  EEXIST: 'EIO',
};

/** The md error `err` as the block error an array's read, write, flush or discard rejects with. */
export function asBlockError(err: MdError, prefix: string): BlockError {
  return new BlockError(MD_AS_BLOCK_CODE[err.code], `${prefix}: ${err.message}`, { cause: err });
}
