// Membership changes, as mdadm's manage mode: `fail`, `remove`, `re-add` (bitmap-guided: only
// what changed while the member was away is recovered) and `add` (a replacement: written chunks
// are rebuilt, Unwritten ones skipped; or a spare when no role is vacant).

import type { Command } from 'commander';
import { request, type TargetOptions } from '../array-target.js';
import { addRemoteOptions } from '../remote-options.js';
import type { ControlRequest } from '../../engine/control/protocol.js';
import { formatArrayStatus } from '../status-format.js';

type Op = Extract<ControlRequest, { member: string }>['op'];

const COMMANDS: Array<{ op: Op; description: string }> = [
  { op: 'fail', description: 'mark a member faulty (refused when no complete copy would remain)' },
  { op: 'remove', description: 'detach a faulty or spare member from the array' },
  { op: 're-add', description: 'bring a former member back; only the chunks that changed while it was away are recovered' },
  { op: 'add', description: 'add a new member: it fills a vacant role (written chunks rebuilt) or becomes a spare' },
];

export function register(program: Command): void {
  for (const { op, description } of COMMANDS) {
    addRemoteOptions(program
      .command(op))
      .description(description)
      .argument('<member>', 'the member to ' + op)
      .argument('[members...]', 'the array\'s current members (or use --control)')
      .option('--control <socket>', 'control socket of the engine serving the array')
      .option('-f, --force', 'assemble even if members are missing or stale')
      .option('--json', 'print the resulting status as JSON')
      .action(async (member: string, members: string[], o: TargetOptions & { json?: boolean }) => {
        // With --json, stdout carries the JSON document alone; progress goes to stderr.
        const progressTo = o.json ? process.stderr : process.stdout;
        const reply = await request(members, { ...o, progress: (l) => progressTo.write(`${l}\n`) }, { op, member });
        if (o.json) {
          process.stdout.write(`${JSON.stringify({ recovery: reply.recovery, status: reply.status }, null, 2)}\n`);
          return;
        }
        if (reply.recovery) process.stdout.write(`${member}: ${reply.recovery === 'bitmap' ? 'bitmap-guided recovery (only what changed while it was away)' : 'full recovery'}\n`);
        if (reply.status) process.stdout.write(formatArrayStatus(reply.status));
      });
  }
}
