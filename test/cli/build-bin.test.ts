// `npm run build` as a developer runs it (and `npm run bench:nbd`, which builds first): the
// `llraid` executable it writes must be executable, so that `npx llraid` works after every
// build and not only after `npm ci`. The build runs in a copy of the project (sources, configs,
// the installed node_modules linked in), so that it never removes the dist/ that other tests
// are running the CLI from.
//
// Why two builds: the first `npx llraid` in a directory installs the project into npm's npx
// cache, and linking its bin there sets the mode as a side effect; later runs reuse that cache
// entry and execute dist/src/cli/bin.cjs as the build left it.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cp, mkdtemp, readFile, rm, stat, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const root = resolve(import.meta.dirname, '../..');

async function npxLlraidVersion(cwd: string): Promise<string> {
  return run('npx', ['--no-install', 'llraid', '--version'], { cwd }).then(
    (r) => r.stdout.trim(),
    (err: { stderr: string }) => `npx failed: ${err.stderr.trim()}`,
  );
}

test('npm run build leaves the llraid bin executable (0755) and npx llraid --version runs after each build', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'llraid-build-'));
  const npxCache = join((await run('npm', ['config', 'get', 'cache'])).stdout.trim(), '_npx');
  t.after(async () => {
    await rm(dir, { recursive: true, force: true });
    // The npx cache entry of this directory (libnpmexec names it by the path's sha512).
    await rm(join(npxCache, createHash('sha512').update(dir).digest('hex').slice(0, 16)), { recursive: true, force: true });
  });
  for (const f of ['package.json', 'tsconfig.json', 'tsconfig.build.json', 'src', 'scripts']) {
    await cp(join(root, f), join(dir, f), { recursive: true });
  }
  await symlink(join(root, 'node_modules'), join(dir, 'node_modules'), 'dir');
  const pkg = JSON.parse(await readFile(join(dir, 'package.json'), 'utf8')) as { version: string; bin: Record<string, string> };
  const bin = join(dir, pkg.bin.llraid!);

  for (const build of ['first', 'second']) {
    await run('npm', ['run', '--silent', 'build'], { cwd: dir });
    assert.equal(await npxLlraidVersion(dir), pkg.version, `npx llraid after the ${build} build`);
    assert.equal((await stat(bin)).mode & 0o777, 0o755, `${pkg.bin.llraid} is executable after the ${build} build`);
  }
});
