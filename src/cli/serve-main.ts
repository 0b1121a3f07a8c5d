// `llraid serve` alone: the CLI as a volume engine runs it, one process per staged volume.
// scripts/build.mjs bundles this entry and everything it imports into one file
// (dist/src/bundle/serve.cjs), which bin.cts requires for `serve`: the same program as main.ts
// (run.ts) with only the serve command in it. One file spares an engine what loading ~120
// modules one by one costs (docs/architecture.md, "What an engine costs"). The bundle is
// CommonJS, which has no top-level await: the exit code is set when run() settles.

import { run } from './run.js';

void run(process.argv, [{ names: ['serve'], load: () => import('./commands/serve.js') }]).then((code) => {
  process.exitCode = code;
});
