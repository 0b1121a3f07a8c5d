// Sync passes on demand, as md's sync_action: `check` counts mismatched sectors between copies
// and rewrites no data (offline, the assembly around it writes superblocks as any assembly does); `repair` rewrites them; `sync` resyncs what the bitmap marks, or with
// --proactive builds parity ahead of the first write (raid5/6). Each runs to the end.

import type { Command } from 'commander';
import type { ControlRequest } from '../../engine/control/protocol.js';
import { request, type TargetOptions } from '../array-target.js';
import { addRemoteOptions } from '../remote-options.js';
import { formatSyncSummary } from '../status-format.js';

interface SyncCommand {
  name: string;
  description: string;
  request(o: { proactive?: boolean }): ControlRequest;
}

const COMMANDS: SyncCommand[] = [
  {
    name: 'check',
    description:
      'read every written chunk and count sectors whose copies differ (md mismatch_cnt); rewrites no data. '
      + 'Offline it assembles the array first, which, as any assembly, records the start and the clean stop in the superblocks '
      + 'and resyncs what the bitmap marks after an unclean stop',
    request: () => ({ op: 'sync', mode: 'check' }),
  },
  { name: 'repair', description: 'as check, and rewrite the copies that differ', request: () => ({ op: 'sync', mode: 'repair' }) },
  {
    name: 'sync',
    description: 'resync the chunks the bitmap marks; --proactive (raid5/6) builds parity for never-written chunks too',
    request: (o) => (o.proactive ? { op: 'proactive-sync' } : { op: 'sync', mode: 'resync' }),
  },
];

export function register(program: Command): void {
  for (const c of COMMANDS) {
    const cmd = addRemoteOptions(program
      .command(c.name))
      .description(c.description)
      .argument('[members...]', "the array's members (or use --control)")
      .option('--control <socket>', 'control socket of the engine serving the array')
      .option('-f, --force', 'assemble even if members are missing or stale')
      .option('--json', 'print the summary as JSON');
    if (c.name === 'sync') {
      cmd.option('--proactive', 'raid5/6: Unwritten chunks get parity now (CleanUnwritten), so first writes need no lazy sync');
    }
    cmd.action(async (members: string[], o: TargetOptions & { json?: boolean; proactive?: boolean }) => {
      // With --json, stdout carries the JSON document alone; progress goes to stderr.
      const progressTo = o.json ? process.stderr : process.stdout;
      const reply = await request(members, { ...o, progress: (l) => progressTo.write(`${l}\n`) }, c.request(o));
      const summary = reply.summary ?? null;
      const mismatchCount = reply.status?.mismatchCount ?? 0;
      if (o.json) {
        process.stdout.write(`${JSON.stringify({ summary, mismatchCount, bitmap: reply.status?.bitmap ?? null }, null, 2)}\n`);
        return;
      }
      process.stdout.write(summary ? `${formatSyncSummary(summary)}\n` : `${c.name}: nothing to do\n`);
      if (c.name === 'sync') return;
      process.stdout.write(`mismatch_cnt ${mismatchCount}\n`);
      // Like a failed fsck: a check that found differences exits non-zero so scripts notice.
      if (c.name === 'check' && mismatchCount > 0) process.exitCode = 1;
    });
  }
}
