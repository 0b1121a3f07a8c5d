// The test suite's long mode: `npm run test:long` sets LLRAID_TEST_LONG=1, and the torture and
// property tests scale their case counts up to the figures the reliability work promises. The
// normal run keeps them small enough for CI's hour; both run the same code.

export const longMode = process.env.LLRAID_TEST_LONG === '1';

/** `short` in the normal run, `long` in long mode; an explicit environment count wins over both. */
export function scaled(short: number, long: number, override?: string): number {
  if (override !== undefined && process.env[override] !== undefined) {
    const n = Number(process.env[override]);
    if (!Number.isSafeInteger(n) || n <= 0) throw new Error(`${override}: expected a positive integer, found "${process.env[override]}"`);
    return n;
  }
  return longMode ? long : short;
}
