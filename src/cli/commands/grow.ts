// `llraid grow --size SIZE|max`: every member gives the array more of its space (mdadm --grow
// --size), so the array gets bigger at its end and nothing stored moves. Member files are
// extended as needed; block devices must already be big enough. Online through --control (the
// engine serving the array grows it live) or offline on the member paths.

import type { Command } from 'commander';
import { addRemoteOptions } from '../remote-options.js';
import { request, type TargetOptions } from '../array-target.js';
import { parseSize } from '../../units/byte-sizes.js';
import { formatArrayStatus } from '../status-format.js';

export function register(program: Command): void {
  addRemoteOptions(program
    .command('grow'))
    .description('give the array more of each member: --size bytes of data per member, or max')
    .argument('[members...]', "the array's members (or use --control)")
    .requiredOption('-z, --size <size>', 'data bytes used on each member (e.g. 2G), or max for all they hold')
    .option('--control <socket>', 'control socket of the engine serving the array')
    .option('-f, --force', 'assemble even if members are missing or stale')
    .option('--json', 'print the resulting status as JSON')
    .action(async (members: string[], o: TargetOptions & { size: string; json?: boolean }) => {
      const memberBytes = o.size === 'max' ? 'max' : parseSize(o.size, '--size');
      const reply = await request(members, { ...o, progress: (l) => process.stdout.write(`${l}\n`) }, { op: 'grow', memberBytes });
      if (o.json) {
        process.stdout.write(`${JSON.stringify({ status: reply.status }, null, 2)}\n`);
        return;
      }
      if (reply.status) process.stdout.write(formatArrayStatus(reply.status));
    });
}
