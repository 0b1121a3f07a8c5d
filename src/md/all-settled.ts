// Waiting for a request's member I/O as a whole: a request that fails must not return while other
// member reads or writes of it still run, since its caller may reuse the buffer they read into or
// write from (BlockDevice.write/readInto) as soon as it returns.

/** Waits for every promise to settle, then throws the first rejection: nothing is left running behind a failure. */
export async function allSettledOrThrow<T>(promises: readonly Promise<T>[]): Promise<T[]> {
  const results = await Promise.allSettled(promises);
  const failed = results.find((r) => r.status === 'rejected');
  if (failed !== undefined) throw failed.reason;
  return results.map((r) => (r as PromiseFulfilledResult<T>).value);
}
