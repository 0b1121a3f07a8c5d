// The built `llraid` CLI for tests that run it as a user would. `npm test` builds first; a test
// run on its own builds once if dist/ is missing or older than the sources (as `npm run build`
// does, bin mode included, but keeping dist/: other test files may be running the CLI from it).

import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { existsSync, statSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';

const root = resolve(import.meta.dirname, '../..');
export const CLI = join(root, 'dist/src/cli/bin.cjs');
const execFileAsync = promisify(execFile);

function newestSource(dir: string): number {
  let newest = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    newest = Math.max(newest, e.isDirectory() ? newestSource(p) : statSync(p).mtimeMs);
  }
  return newest;
}

export async function buildCli(): Promise<string> {
  if (!existsSync(CLI) || statSync(CLI).mtimeMs < newestSource(join(root, 'src'))) {
    execFileSync(process.execPath, [join(root, 'scripts/build.mjs'), '--no-clean'], { cwd: root, stdio: 'inherit' });
  }
  return CLI;
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs the built CLI with `args` and returns its exit code and output, never throwing on a
 * non-zero exit: tests assert on refusals as much as on successes. `env` replaces the whole
 * environment when given.
 */
export async function runCli(args: readonly string[], options: { env?: NodeJS.ProcessEnv } = {}): Promise<CliResult> {
  const cli = await buildCli();
  try {
    const { stdout, stderr } = await execFileAsync(process.execPath, [cli, ...args], { env: options.env, maxBuffer: 1 << 24 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}
