// `npm run build`: compiles src/ into dist/ and leaves every executable that package.json's
// "bin" names with mode 0755. tsc writes new files 0644 and the build starts from an empty dist/,
// so without the chmod `npx llraid` fails with "Permission denied" until the next `npm ci`
// (which links the bins and sets their mode). `--no-clean` keeps dist/ (tests build that way, so
// that a test running the CLI never sees it vanish under a parallel build).
//
// After tsc, esbuild bundles what an engine runs (`llraid serve`: dist/src/cli/serve-main.js,
// everything it imports and commander) into one file, dist/src/bundle/serve.cjs, which bin.cjs
// requires for `serve`; every other command runs from the modules tsc wrote. One file costs an
// engine about 5 MiB less RSS than ~120 modules and commander's files: each module's own loader
// and V8 records, and the path work of resolving every import, which is enough to have V8's
// optimizing compiler (megabytes of the node binary's code, paged in) compile Node's path
// functions during start. The bundle sits at the depth of dist/src/cli/, so paths made from
// import.meta.url (package.json, koffi's binary) resolve as from the modules tsc wrote. Its
// source map goes through tsc's to src/*.ts.
//
// The bundle is CommonJS, so an engine never starts Node's ES module loader: the loader's own
// modules, and Node 20's loader reads files through fs/promises, whose module loads readline's
// (`process.moduleLoadList`); and an ES import of a built-in reads every export of it to make its
// namespace, which loads what Node otherwise loads on first use (util's parseArgs and MIMEType,
// fs.promises again). Measured idle, with fs/promises out of the engine's own code: 0.9 MiB RSS less.

import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import process from 'node:process';
import { build } from 'esbuild';

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

// Built beside the bundle and renamed over it, file by file: an engine started by a test while
// another test file rebuilds (`--no-clean`) finds the old bundle or the new one, never none.
const bundleDir = join(root, 'dist/src/bundle');
const staging = `${bundleDir}.${process.pid}`;
rmSync(staging, { recursive: true, force: true });
await build({
  entryPoints: { serve: join(root, 'dist/src/cli/serve-main.js') },
  outdir: staging,
  bundle: true,
  format: 'cjs',
  // .cjs: package.json's "type" makes a .js file an ES module.
  outExtension: { '.js': '.cjs' },
  platform: 'node',
  target: 'node20',
  // The sources' import.meta.url is the bundle's own URL, as in the ES modules tsc wrote
  // (CommonJS has no import.meta; esbuild would leave it empty).
  banner: { js: "const importMetaUrlOfBundle = require('node:url').pathToFileURL(__filename).href;" },
  define: { 'import.meta.url': 'importMetaUrlOfBundle' },
  // performance.now() from process.hrtime(), without node:perf_hooks (engine-clock.mjs): the
  // global through inject, the module's import through the plugin.
  inject: [join(root, 'scripts/engine-clock.mjs')],
  plugins: [{
    name: 'engine-clock',
    setup(b) {
      b.onResolve({ filter: /^(node:)?perf_hooks$/ }, () => ({ path: join(root, 'scripts/engine-clock.mjs') }));
    },
  }],
  // Errors take their name from their class (common/llraid-error.ts): names stay as written
  // when bundling renames one of two same-named classes.
  keepNames: true,
  // Minified: V8 keeps a script's whole text for as long as it runs, and the text is less than
  // half of it without comments and long local names (0.68 -> 0.29 MB; an engine's idle RSS
  // 0.4-0.6 MiB less). Names of functions and classes stay (keepNames); the map maps the rest back.
  minify: true,
  // Code in ASCII (other characters escaped): see below.
  charset: 'ascii',
  sourcemap: true,
  logLevel: 'warning',
});
// V8 holds a script's text as one byte per character only when all of it is Latin-1; a single
// other character (an arrow or a dash in a comment esbuild keeps) doubles it, 0.7 MiB in every
// engine. After charset 'ascii' only comments can hold one: each becomes '?', one UTF-16 unit
// for one, so the source map's columns stay right.
const bundle = join(staging, 'serve.cjs');
const other = /\bperformance\.(?!now\b)\w+/.exec(readFileSync(bundle, 'utf8'));
if (other) throw new Error(`the serve bundle uses ${other[0]}, which engine-clock.mjs does not have`);
writeFileSync(bundle, readFileSync(bundle, "utf8").replace(/[^\t\n\r\x20-\x7e]/g, "?"));
mkdirSync(bundleDir, { recursive: true });
// The map first: a bundle never points at a map older than itself for long.
for (const f of ['serve.cjs.map', 'serve.cjs']) renameSync(join(staging, f), join(bundleDir, f));
rmSync(staging, { recursive: true, force: true });

const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const bins = typeof pkg.bin === 'string' ? [pkg.bin] : Object.values(pkg.bin ?? {});
for (const bin of bins) chmodSync(join(root, bin), 0o755);
