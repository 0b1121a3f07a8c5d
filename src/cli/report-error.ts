// The one place the CLI turns an error into a message on stderr and an exit code.

import { BlockError } from '../block/errors.js';
import { MdError } from '../md/index.js';
import { SizeError } from '../units/byte-sizes.js';

/** Exit codes: 1 for an operation that failed on its input or state, 2 for usage, 70 for a bug. */
export function reportError(err: unknown): number {
  if (err instanceof MdError || err instanceof BlockError) {
    process.stderr.write(`llraid: ${err.message} (${err.code})\n`);
    return 1;
  }
  if (err instanceof UsageError || err instanceof SizeError) {
    process.stderr.write(`llraid: ${err.message}\n`);
    return 2;
  }
  const e = err as NodeJS.ErrnoException;
  if (e && typeof e.code === 'string' && typeof e.message === 'string') {
    process.stderr.write(`llraid: ${e.message}\n`);
    return 1;
  }
  process.stderr.write(`llraid: internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  return 70;
}

/** A bad command line that commander itself could not catch (e.g. inconsistent options). */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}
