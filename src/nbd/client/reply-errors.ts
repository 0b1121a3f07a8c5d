// The one place where an NBD error number in a reply becomes a block error, the reverse of
// ../error-numbers.ts: md acts on block codes only. A message that starts `fenced:` is a member
// service refusing an engine with a lower attach epoch (issue 13 plan, 4): FencedError, whatever
// the number.

import {
  BlockError,
  FencedError,
  InvalidRequestError,
  IoError,
  NoSpaceError,
  NotSupportedError,
  ReadOnlyError,
  ShutdownError,
} from '../../block/errors.js';
import { NBD_EINVAL, NBD_EIO, NBD_ENOMEM, NBD_ENOSPC, NBD_ENOTSUP, NBD_EOVERFLOW, NBD_EPERM, NBD_ESHUTDOWN } from '../protocol.js';

const NAMES: Record<number, string> = {
  [NBD_EPERM]: 'EPERM',
  [NBD_EIO]: 'EIO',
  [NBD_ENOMEM]: 'ENOMEM',
  [NBD_EINVAL]: 'EINVAL',
  [NBD_ENOSPC]: 'ENOSPC',
  [NBD_EOVERFLOW]: 'EOVERFLOW',
  [NBD_ENOTSUP]: 'ENOTSUP',
  [NBD_ESHUTDOWN]: 'ESHUTDOWN',
};

/** `what` names the member and the request, e.g. `nbds://h:1/u: WRITE [0, +4096)`. */
export function replyError(what: string, errno: number, message: string): BlockError {
  const text = `${what} failed: ${message === '' ? 'no message' : message} (NBD ${NAMES[errno] ?? `error ${errno}`})`;
  if (message.startsWith('fenced:')) return new FencedError(`${what}: ${message}`);
  switch (errno) {
    case NBD_ENOSPC:
      return new NoSpaceError(text);
    case NBD_EPERM:
      return new ReadOnlyError(text);
    case NBD_EINVAL:
      return new InvalidRequestError(text);
    case NBD_ENOTSUP:
      return new NotSupportedError(text);
    case NBD_ESHUTDOWN:
      return new ShutdownError(text);
    default:
      // EIO, ENOMEM, EOVERFLOW and numbers proto.md does not list: the request failed.
      return new IoError(text);
  }
}
