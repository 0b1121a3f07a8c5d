#!/usr/bin/env node
// The `llraid` command. Each subcommand lives in src/cli/commands/<name>.ts and exports
// `register(program)`; this file only lists them, and run.ts runs the one named. `serve` also
// has an entry of its own (serve-main.ts), which bin.cts runs from a bundle.

import { run, type CommandModule } from './run.js';

// One line per command module, with the commands it registers; keep the list in the order
// `llraid --help` should show them. Only the module of the command being run is loaded (all of
// them for help or an unknown name): an engine (`serve`) then loads the md, nbd, block and engine
// code and none of the CSI plugin's, which costs memory in every volume's process.
const commandModules: CommandModule[] = [
  { names: ['create'], load: () => import('./commands/create.js') },
  { names: ['assemble'], load: () => import('./commands/assemble.js') },
  { names: ['stop'], load: () => import('./commands/stop.js') },
  { names: ['status'], load: () => import('./commands/status.js') },
  { names: ['examine'], load: () => import('./commands/examine.js') },
  { names: ['fail', 'remove', 're-add', 'add'], load: () => import('./commands/member-ops.js') },
  { names: ['check', 'repair', 'sync'], load: () => import('./commands/sync-ops.js') },
  { names: ['grow'], load: () => import('./commands/grow.js') },
  { names: ['serve'], load: () => import('./commands/serve.js') },
  { names: ['lease'], load: () => import('./commands/lease.js') },
  { names: ['member-serve'], load: () => import('./commands/member-serve.js') },
  { names: ['demo'], load: () => import('./commands/demo.js') },
  { names: ['csi'], load: () => import('./commands/csi.js') },
  { names: ['engine-host'], load: () => import('./commands/engine-host.js') },
];

process.exitCode = await run(process.argv, commandModules);
