// What every way of running the `llraid` command shares (main.ts: every command; serve-main.ts:
// an engine's `serve` alone): the settings from the environment, the program and its version,
// the command modules to load for the arguments, and mapping errors to exit codes once.

import { Command, CommanderError } from 'commander';
import { readFileSync } from 'node:fs';
import { EXIT_USAGE, reportError, UsageError } from './report-error.js';
import { setInlineIoDefault } from '../block/file-device.js';
import { setDefaultDeadline } from '../block/deadline-io.js';
import { configureTrace } from '../common/trace.js';

/** One command module, with the commands it registers. */
export interface CommandModule {
  names: string[];
  load: () => Promise<{ register(program: Command): void }>;
}

/** The command modules to load for `argv`: the named command's, or all of them. */
function modulesFor(argv: string[], commandModules: readonly CommandModule[]): readonly CommandModule[] {
  const name = argv[2];
  const one = commandModules.filter((m) => name !== undefined && m.names.includes(name));
  return one.length > 0 ? one : commandModules;
}

function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as {
    version: string;
  };
  return pkg.version;
}

/** Runs the command `argv` names, from `commandModules`; resolves to the exit code. */
export async function run(argv: string[], commandModules: readonly CommandModule[]): Promise<number> {
  // LLRAID_TRACE=md,nbd (or all) and LLRAID_VERBOSITY=debug|info|error: trace lines on stderr
  // (src/block/trace.ts). A name it does not know is refused rather than traced silently never.
  const traceProblems = configureTrace({ trace: process.env.LLRAID_TRACE, verbosity: process.env.LLRAID_VERBOSITY });
  if (traceProblems.length > 0) return reportError(new UsageError(traceProblems.join('; ')));
  // LLRAID_INLINE_IO=0: every member request through libuv's pool, no inline fast path
  // (src/block/positional-io.ts; the inline calls are bounded either way).
  if (process.env.LLRAID_INLINE_IO === '0') setInlineIoDefault(false);
  // LLRAID_MEMBER_TIMEOUT: seconds a member whose requests may wait for a device (a file on a
  // disk or network filesystem, a block device) may leave a request unanswered before it is
  // failed; on a disk, seconds in which its block device completes nothing (src/block/deadline-io.ts).
  const timeout = process.env.LLRAID_MEMBER_TIMEOUT;
  if (timeout !== undefined && timeout !== '') {
    const s = Number(timeout);
    if (!(s > 0) || !Number.isFinite(s)) return reportError(new UsageError(`LLRAID_MEMBER_TIMEOUT: expected seconds > 0, found ${JSON.stringify(timeout)}`));
    setDefaultDeadline(s * 1000);
  }
  const program = new Command('llraid')
    .description('RAID volumes from node-local disks: a userspace md engine with the lockless bitmap, served over NBD')
    .version(packageVersion())
    .exitOverride()
    .showHelpAfterError();
  for (const m of modulesFor(argv, commandModules)) (await m.load()).register(program);
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    // Commander has printed its message (and the help): an unknown option or a missing argument
    // is usage, as a UsageError is; help and --version exit 0.
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : EXIT_USAGE;
    return reportError(err);
  }
}
