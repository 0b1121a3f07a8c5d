// The one place the CLI turns an error into a message on stderr and an exit code.

import { BLOCK_ERROR_CODES, BlockError, type BlockErrorCode } from '../block/errors.js';
import { SOCKET_PATH_ERROR_CODES, SocketPathError, type SocketPathErrorCode } from '../block/socket-file.js';
import { LlraidError } from '../common/llraid-error.js';
import { CommandError, CSI_ERROR_CODES, CsiError, type CsiErrorCode } from '../csi/errors.js';
import { UnresolvablePathError } from '../csi/kubelet-paths.js';
import { EngineError } from '../engine/control/client.js';
import { CONTROL_ERROR_CODES, type ControlErrorCode } from '../engine/control/protocol.js';
import { SUPERVISOR_ERROR_CODES, SupervisorError, type SupervisorErrorCode } from '../engine/errors.js';
import { K8S_ERROR_CODES, K8sError, type K8sErrorCode } from '../k8s/errors.js';
import { MD_ERROR_CODES, MdError, type MdErrorCode } from '../md/index.js';
import { NBD_ERROR_CODES, NbdError, type NbdErrorCode } from '../nbd/errors.js';
import { SIZE_ERROR_CODES, SizeError, type SizeErrorCode } from '../units/byte-sizes.js';

/** Exit codes: 1 for an operation that failed on its input or state, 2 for usage, 70 for a bug. */
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;
export const EXIT_BUG = 70;

/** A bad command line that commander itself could not catch (e.g. inconsistent options). */
export class UsageError extends LlraidError<'EUSAGE'> {
  constructor(message: string) {
    super('EUSAGE', message);
  }
}

/** Every error family the CLI can meet, with the codes of each (the tests iterate these). */
export const CLI_ERROR_FAMILIES = {
  block: BLOCK_ERROR_CODES,
  socketPath: SOCKET_PATH_ERROR_CODES,
  md: MD_ERROR_CODES,
  engine: CONTROL_ERROR_CODES,
  supervisor: SUPERVISOR_ERROR_CODES,
  nbd: NBD_ERROR_CODES,
  csi: CSI_ERROR_CODES,
  command: ['ECOMMAND'],
  path: ['EUNRESOLVABLE'],
  k8s: K8S_ERROR_CODES,
  size: SIZE_ERROR_CODES,
  usage: ['EUSAGE'],
} as const;

const F = EXIT_FAILED;
const U = EXIT_USAGE;

/**
 * The exit code of each code of each family. Everything an operation can meet on its input or
 * the state it finds is a failure, F (a script tells them apart by the code in the message);
 * a command line the CLI cannot run is usage, U. By family, since one code (EINVAL) is usage
 * from a size on the command line and a failure from an array.
 */
export const EXIT_STATUS: {
  block: Record<BlockErrorCode, number>;
  socketPath: Record<SocketPathErrorCode, number>;
  md: Record<MdErrorCode, number>;
  engine: Record<ControlErrorCode, number>;
  supervisor: Record<SupervisorErrorCode, number>;
  nbd: Record<NbdErrorCode, number>;
  csi: Record<CsiErrorCode, number>;
  command: Record<'ECOMMAND', number>;
  path: Record<'EUNRESOLVABLE', number>;
  k8s: Record<K8sErrorCode, number>;
  size: Record<SizeErrorCode, number>;
  usage: Record<'EUSAGE', number>;
} = {
  block: { EIO: F, EINVAL: F, ERANGE: F, EROFS: F, ENOSPC: F, ENOTSUP: F, EBUSY: F, ETIMEDOUT: F, ESHUTDOWN: F, EFENCED: F },
  socketPath: { ENOTSOCK: F, EADDRINUSE: F },
  md: { EBADMETA: F, EUUID: F, ESTALE: F, ENODEV: F, EINVAL: F, EIO: F, EBUSY: F, ENOSPC: F, ENOTSUP: F, EOVERFLOW: F, EEXIST: F },
  // An engine's refusal exits as the same refusal would offline.
  engine: {
    EIO: F, EINVAL: F, ERANGE: F, EROFS: F, ENOSPC: F, ENOTSUP: F, EBUSY: F, ETIMEDOUT: F, ESHUTDOWN: F, EFENCED: F,
    EBADMETA: F, EUUID: F, ESTALE: F, ENODEV: F, EOVERFLOW: F, EEXIST: F, ECONNREFUSED: F, EPROTO: F,
  },
  supervisor: { ESTART: F, ESTOP: F },
  // A member URI typed on the command line that is not one is usage; attaching it failed is a failure.
  nbd: {
    NBD_PROTOCOL: F, NBD_CLOSED: F, NBD_EXPORT: F, NBD_LISTEN: F, NBD_LIMITS: F, NBD_REMOTE: F,
    NBD_URI: U, NBD_CONNECT: F, NBD_TLS: F, NBD_NO_EXPORT: F, NBD_NOT_MEMBER: F,
  },
  // `llraid csi`: a configuration refused is a failure to start, as a bad setting of the chart.
  csi: {
    INVALID_ARGUMENT: F, NOT_FOUND: F, ALREADY_EXISTS: F, RESOURCE_EXHAUSTED: F, FAILED_PRECONDITION: F,
    ABORTED: F, OUT_OF_RANGE: F, UNAVAILABLE: F, UNIMPLEMENTED: F, INTERNAL: F,
  },
  command: { ECOMMAND: F },
  path: { EUNRESOLVABLE: F },
  k8s: { EINVAL: F, EAPI: F, CONFLICT: F, EUNREACHABLE: F, ECLOSED: F, ELISTEN: F },
  // A size the user typed (--size, --chunk).
  size: { EINVAL: U },
  usage: { EUSAGE: U },
};

/** The exit code of an llraid error: its family's table, at its code. */
function exitStatus(err: LlraidError): number | undefined {
  if (err instanceof UsageError) return EXIT_STATUS.usage[err.code];
  if (err instanceof SizeError) return EXIT_STATUS.size[err.code];
  if (err instanceof BlockError) return EXIT_STATUS.block[err.code];
  if (err instanceof SocketPathError) return EXIT_STATUS.socketPath[err.code];
  if (err instanceof MdError) return EXIT_STATUS.md[err.code];
  if (err instanceof EngineError) return EXIT_STATUS.engine[err.code];
  if (err instanceof SupervisorError) return EXIT_STATUS.supervisor[err.code];
  if (err instanceof NbdError) return EXIT_STATUS.nbd[err.code];
  if (err instanceof CsiError) return EXIT_STATUS.csi[err.code];
  if (err instanceof CommandError) return EXIT_STATUS.command[err.code];
  if (err instanceof UnresolvablePathError) return EXIT_STATUS.path[err.code];
  if (err instanceof K8sError) return EXIT_STATUS.k8s[err.code];
  return undefined;
}

/**
 * Prints `err` as one line and returns the exit code: an llraid error with its code in
 * parentheses (usage errors without: the message says it all), a system error as it is, and
 * anything else as a bug with its stack.
 */
export function reportError(err: unknown, write: (text: string) => void = (t) => void process.stderr.write(t)): number {
  const status = err instanceof LlraidError ? exitStatus(err) : undefined;
  if (status !== undefined) {
    const e = err as LlraidError;
    write(`llraid: ${e.message}${status === EXIT_USAGE ? '' : ` (${e.code})`}\n`);
    return status;
  }
  const e = err as NodeJS.ErrnoException;
  if (e && typeof e.code === 'string' && typeof e.message === 'string') {
    write(`llraid: ${e.message}\n`);
    return EXIT_FAILED;
  }
  write(`llraid: internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  return EXIT_BUG;
}
