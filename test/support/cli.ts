// The built `llraid` CLI for tests that run it as a user would. `npm test` builds first; a test
// run on its own builds once if dist/ is missing or older than the sources (as `npm run build`
// does, bin mode included, but keeping dist/: other test files may be running the CLI from it).

import { execFileSync } from 'node:child_process';
import { existsSync, statSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';

const root = resolve(import.meta.dirname, '../..');
export const CLI = join(root, 'dist/src/cli/bin.cjs');

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
