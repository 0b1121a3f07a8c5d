// Typed errors of the NBD layer: a peer broke the protocol, the server was used wrongly, or the
// client could not attach an export. Block errors that happen while serving never surface here;
// error-numbers.ts turns them into NBD error numbers on the wire. The client's requests, once
// attached, reject with block errors only (client/reply-errors.ts).

import { LlraidError } from '../common/llraid-error.js';

export const NBD_ERROR_CODES = [
  'NBD_PROTOCOL', // the peer sent bytes the protocol does not allow; the connection is dropped
  'NBD_CLOSED', // the connection ended while a message was still expected
  'NBD_EXPORT', // an export definition is unusable (duplicate name, name too long)
  'NBD_LISTEN', // the server could not (or will not) listen where it was asked to
  'NBD_LIMITS', // connection limits that are not numbers, or caps too small for one message
  'NBD_REMOTE', // the server refused an option or request with an NBD error (client side)
  'NBD_URI', // an NBD URI that is not nbd://, nbds://, nbd+unix:// or nbds+unix:// as libnbd reads them
  'NBD_CONNECT', // the client could not reach the server (refused, unreachable, no answer in time)
  'NBD_TLS', // TLS could not be set up: refused by the server, a certificate not trusted, or missing
  'NBD_NO_EXPORT', // the server has no export of the name asked for (a member: a wrong device UUID)
  'NBD_NOT_MEMBER', // asked with an attach epoch, the server did not accept it: not an llraid member service
] as const;
export type NbdErrorCode = (typeof NBD_ERROR_CODES)[number];

export class NbdError extends LlraidError<NbdErrorCode> {}

export function isNbdError(err: unknown, code?: NbdErrorCode): err is NbdError {
  return err instanceof NbdError && (code === undefined || err.code === code);
}
