// Typed errors of the engine layer: starting, supervising and stopping volume engines. The CSI
// layer maps them to gRPC codes (csi/errors.ts); the control protocol's own failures are
// EngineError (control/client.ts), carrying the engine's md or block code.

export type SupervisorErrorCode =
  | 'ESTART' // an engine could not be started, or did not come to serve
  | 'ESTOP'; // an engine did not stop within its time and was killed

export class SupervisorError extends Error {
  readonly code: SupervisorErrorCode;
  constructor(code: SupervisorErrorCode, message: string) {
    super(message);
    this.code = code;
    this.name = 'SupervisorError';
  }
}
