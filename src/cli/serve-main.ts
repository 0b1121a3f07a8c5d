// `llraid serve` alone: the CLI as a volume engine runs it, one process per staged volume.
// scripts/build.mjs bundles this entry and everything it imports into one file
// (dist/src/bundle/serve.js), which bin.cts loads for `serve`: the same program as main.ts
// (run.ts) with only the serve command in it. One file spares an engine what loading ~120
// modules one by one costs (docs/architecture.md, "What an engine costs").

import { run } from './run.js';

process.exitCode = await run(process.argv, [{ names: ['serve'], load: () => import('./commands/serve.js') }]);
