// `npm run build`: compiles src/ into dist/ and leaves every executable that package.json's
// "bin" names with mode 0755. tsc writes new files 0644 and the build starts from an empty dist/,
// so without the chmod `npx llraid` fails with "Permission denied" until the next `npm ci`
// (which links the bins and sets their mode). `--no-clean` keeps dist/ (tests build that way, so
// that a test running the CLI never sees it vanish under a parallel build).

import { execFileSync } from 'node:child_process';
import { chmodSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import process from 'node:process';

const root = join(import.meta.dirname, '..');
const clean = !process.argv.includes('--no-clean');

if (clean) rmSync(join(root, 'dist'), { recursive: true, force: true });
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
try {
  execFileSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json')], { cwd: root, stdio: 'inherit' });
} catch (err) {
  // tsc has printed its diagnostics; its exit status is the build's.
  process.exit(typeof err.status === 'number' ? err.status : 1);
}

const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const bins = typeof pkg.bin === 'string' ? [pkg.bin] : Object.values(pkg.bin ?? {});
for (const bin of bins) chmodSync(join(root, bin), 0o755);
