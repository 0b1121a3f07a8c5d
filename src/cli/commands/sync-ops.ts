// Sync passes on demand, as md's sync_action: `check` counts mismatched sectors between copies
// and writes nothing; `repair` rewrites them; `resync` forces a resync. Each runs to the end.

import type { Command } from 'commander';
import { request, type TargetOptions } from '../array-target.js';
import { formatSyncSummary } from '../status-format.js';

const COMMANDS = [
  { mode: 'check', description: 'read every written chunk and count sectors whose copies differ (md mismatch_cnt); writes nothing' },
  { mode: 'repair', description: 'as check, and rewrite the copies that differ' },
] as const;

export function register(program: Command): void {
  for (const { mode, description } of COMMANDS) {
    program
      .command(mode)
      .description(description)
      .argument('[members...]', "the array's members (or use --control)")
      .option('--control <socket>', 'control socket of the engine serving the array')
      .option('-f, --force', 'assemble even if members are missing or stale')
      .option('--json', 'print the summary as JSON')
      .action(async (members: string[], o: TargetOptions & { json?: boolean }) => {
        const reply = await request(members, { ...o, progress: (l) => process.stdout.write(`${l}\n`) }, { op: 'sync', mode });
        const summary = reply.summary ?? null;
        if (o.json) {
          process.stdout.write(`${JSON.stringify({ summary, mismatchCount: reply.status?.mismatchCount ?? 0 }, null, 2)}\n`);
          return;
        }
        process.stdout.write(summary ? `${formatSyncSummary(summary)}\n` : `${mode}: nothing to do\n`);
        process.stdout.write(`mismatch_cnt ${reply.status?.mismatchCount ?? 0}\n`);
        // Like a failed fsck: a check that found differences exits non-zero so scripts notice.
        if (mode === 'check' && (reply.status?.mismatchCount ?? 0) > 0) process.exitCode = 1;
      });
  }
}
