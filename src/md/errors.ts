// Typed errors of the md engine. The CLI prints them; NBD and CSI map them to their own codes.

export type MdErrorCode =
  | 'EBADMETA' // a superblock or bitmap on a member is corrupt or not ours (wrong magic, checksum, version)
  | 'EUUID' // a member belongs to another array
  | 'ESTALE' // a member's events lag the array's
  | 'ENODEV' // not enough working members for the level
  | 'EINVAL' // an argument is out of range or inconsistent
  | 'EIO' // the array could not complete the request (no complete copy left)
  | 'EBUSY' // the operation conflicts with one in progress
  | 'ENOSPC' // not enough space (member too small, bitmap does not fit)
  | 'ENOTSUP' // the level or configuration does not support this
  | 'EOVERFLOW' // a counter on the members cannot go up any more (events at the top of their u64 field)
  | 'EEXIST'; // a member already carries an llraid superblock

export class MdError extends Error {
  readonly code: MdErrorCode;
  constructor(code: MdErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = 'MdError';
  }
}
