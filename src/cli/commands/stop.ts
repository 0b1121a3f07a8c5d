// `llraid stop`: stops an array cleanly (bitmap flushed, superblocks clean) — the engine serving
// it (--control), after which that engine exits; or, given members, assembles them, finishes the
// resync an unclean stop left owed (bitmap-guided), and stops them.

import type { Command } from 'commander';
import { addRemoteOptions } from '../remote-options.js';
import { request } from '../array-target.js';

export function register(program: Command): void {
  addRemoteOptions(program
    .command('stop'))
    .description('stop an array cleanly: the engine serving it (--control), or the given members')
    .argument('[members...]', 'member files or block devices')
    .option('--control <socket>', 'control socket of the engine serving the array')
    .action(async (members: string[], o: { control?: string }) => {
      await request(members, { ...o, progress: (l) => process.stdout.write(`${l}\n`) }, { op: 'stop' });
      process.stdout.write('stopped cleanly\n');
    });
}
