// Typed errors of the NBD layer: a peer broke the protocol, or the server was used wrongly.
// Block errors that happen while serving never surface here; error-numbers.ts turns them into
// NBD error numbers on the wire.

import { LlraidError } from '../common/llraid-error.js';

export const NBD_ERROR_CODES = [
  'NBD_PROTOCOL', // the peer sent bytes the protocol does not allow; the connection is dropped
  'NBD_CLOSED', // the connection ended while a message was still expected
  'NBD_EXPORT', // an export definition is unusable (duplicate name, name too long)
  'NBD_LISTEN', // the server could not (or will not) listen where it was asked to
  'NBD_LIMITS', // connection limits that are not numbers, or caps too small for one message
  'NBD_REMOTE', // the server answered a request with an NBD error number
] as const;
export type NbdErrorCode = (typeof NBD_ERROR_CODES)[number];

export class NbdError extends LlraidError<NbdErrorCode> {}

export function isNbdError(err: unknown, code?: NbdErrorCode): err is NbdError {
  return err instanceof NbdError && (code === undefined || err.code === code);
}
