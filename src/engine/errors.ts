// Typed errors of the engine layer: starting, supervising and stopping volume engines. The CSI
// layer maps them to gRPC codes (csi/errors.ts); the control protocol's own failures are
// EngineError (control/client.ts), carrying the engine's md or block code.

import { LlraidError } from '../common/llraid-error.js';

export const SUPERVISOR_ERROR_CODES = [
  'ESTART', // an engine could not be started, or did not come to serve
  'ESTOP', // an engine did not stop within its time and was killed
] as const;
export type SupervisorErrorCode = (typeof SUPERVISOR_ERROR_CODES)[number];

export class SupervisorError extends LlraidError<SupervisorErrorCode> {}
