// Retry delays for API writes that failed: exponential from `baseMs`, capped at `maxMs`, with
// "equal jitter" (half fixed, half random) so the nodes of a cluster that lost the API server
// together do not come back in lockstep.

export interface BackoffPolicy {
  baseMs: number;
  maxMs: number;
}

/** Delay before attempt `failures + 1`, given `failures` ≥ 1 consecutive failures. */
export function backoffDelay(policy: BackoffPolicy, failures: number, random: () => number = Math.random): number {
  const exp = Math.min(policy.maxMs, policy.baseMs * 2 ** Math.min(30, Math.max(0, failures - 1)));
  return Math.round(exp / 2 + random() * (exp / 2));
}
