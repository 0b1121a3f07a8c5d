// The base of every error llraid throws. Each layer declares its codes once, as a const array and
// the string-literal union over it (BLOCK_ERROR_CODES in block/errors.ts, MD_ERROR_CODES, ...),
// and each boundary maps those codes with a Record over the union, so a new code does not compile
// until every boundary has decided what it means there (docs/architecture.md, Errors and tracing).
// It lives in the bottom layer so that every layer may import it.

export class LlraidError<C extends string = string> extends Error {
  /** Stable, for programs and boundaries to act on; the message is for people. */
  readonly code: C;

  constructor(code: C, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

export function isLlraidError(err: unknown): err is LlraidError {
  return err instanceof LlraidError;
}
