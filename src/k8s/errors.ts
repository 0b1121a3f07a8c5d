// Typed errors of the Kubernetes layer (status reporter, events, metrics endpoint, replicated
// volumes, node leases). The CLI and the CSI layer see only these; raw client-node exceptions
// are mapped once, in api-call.ts.

import { LlraidError } from '../common/llraid-error.js';

export const K8S_ERROR_CODES = [
  /** A snapshot or an option the caller gave is not valid. */
  'EINVAL',
  /** The API server answered with an error status (see `status`). */
  'EAPI',
  /**
   * A write carried a resourceVersion that is no longer the object's (HTTP 409 Conflict): someone
   * else wrote first. Re-read and decide again.
   */
  'CONFLICT',
  /** The API server could not be reached (connection refused, reset, timeout). */
  'EUNREACHABLE',
  /** The reporter or metrics server was already closed. */
  'ECLOSED',
  /** The metrics port could not be bound. */
  'ELISTEN',
] as const;
export type K8sErrorCode = (typeof K8S_ERROR_CODES)[number];

export class K8sError extends LlraidError<K8sErrorCode> {
  constructor(
    code: K8sErrorCode,
    message: string,
    /** HTTP status of the API answer, for EAPI. */
    readonly status?: number,
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
  }
}
