// How the fast-check property tests choose, print and replay their cases: one seed per test file
// (LLRAID_PROPERTY_SEED replays it, else a fresh one), printed before the first case runs so that
// even a run that hangs or crashes can be replayed; LLRAID_PROPERTY_PATH (from a failure report)
// jumps straight to the failing case. A failure names the exact command that replays it.

import fc from 'fast-check';

export const SEED_ENV = 'LLRAID_PROPERTY_SEED';
export const PATH_ENV = 'LLRAID_PROPERTY_PATH';

/** The seed for this file's properties: the one to replay, or a fresh one; printed either way. */
export function propertySeed(file: string): number {
  const given = process.env[SEED_ENV];
  let seed: number;
  if (given !== undefined) {
    seed = Number(given);
    if (!Number.isSafeInteger(seed)) throw new Error(`${SEED_ENV}: expected an integer, found "${given}"`);
  } else {
    // fast-check takes any 32-bit integer; keep it positive so it reads well on a command line.
    seed = Math.floor(Math.random() * 0x7fff_ffff);
  }
  console.log(`${file}: property seed ${seed}${given === undefined ? '' : ` (from ${SEED_ENV})`}; replay with ${SEED_ENV}=${seed} node --import tsx --test ${file}`);
  return seed;
}

export interface PropertyRun<Ts> {
  /** The test's name, for the replay command's --test-name-pattern. */
  name: string;
  file: string;
  /** The file's seed (propertySeed); `stream` sets this property apart from the file's others. */
  seed: number;
  stream: number;
  numRuns: number;
  property: fc.IAsyncProperty<Ts>;
  examples?: Ts[];
  /** Do not shrink a counterexample (cases whose replays are slow or not bit-for-bit repeatable). */
  endOnFailure?: boolean;
}

/**
 * Runs the property and returns how many cases ran (examples included). Throws with fast-check's
 * report and a replay command on failure, and when fewer cases ran than asked: a property run
 * that checked less than it claims must not pass.
 */
export async function runProperty<Ts>(run: PropertyRun<Ts>): Promise<number> {
  const path = process.env[PATH_ENV];
  const details = await fc.check(run.property, {
    numRuns: run.numRuns,
    seed: (run.seed + run.stream) | 0,
    includeErrorInReport: true,
    ...(run.examples === undefined ? {} : { examples: run.examples }),
    ...(run.endOnFailure === true ? { endOnFailure: true } : {}),
    ...(path === undefined ? {} : { path }),
  });
  if (details.failed) {
    const replay =
      `${SEED_ENV}=${run.seed} ${PATH_ENV}=${details.counterexamplePath ?? ''} ` +
      `node --import tsx --test --test-name-pattern=${JSON.stringify(run.name)} ${run.file}`;
    throw new Error(
      `${fc.defaultReportMessage(details) ?? 'property failed'}\n` +
        `(fast-check's seed is the file seed ${run.seed} + stream ${run.stream})\nreplay this case: ${replay}`,
    );
  }
  // With a path, fast-check runs the one case it names (and its shrinks), not numRuns cases.
  if (path === undefined && details.numRuns !== run.numRuns) {
    throw new Error(`expected ${run.numRuns} property cases to run, ${details.numRuns} ran (${details.numSkips} skipped)`);
  }
  return details.numRuns;
}
