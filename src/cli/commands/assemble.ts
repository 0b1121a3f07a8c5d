// `llraid assemble`: assembles an array from its members (highest events wins; stale and missing
// members named), brings it up to date — the bitmap-guided resync after an unclean stop, or the
// recovery of a member that came back — and stops it cleanly. `llraid serve` keeps it running.

import type { Command } from 'commander';
import { assembleArray, describeBitmapLoad } from '../../md/index.js';
import { formatArrayStatus, formatSyncSummary } from '../status-format.js';
import { addRemoteOptions, memberOpener, type RemoteOptions } from '../remote-options.js';

interface Options extends RemoteOptions {
  force?: boolean;
  uuid?: string;
  sync?: boolean;
  json?: boolean;
}

export function register(program: Command): void {
  addRemoteOptions(program
    .command('assemble'))
    .description('assemble an array from its members, resync what the bitmap marks, and stop it cleanly')
    .argument('<members...>', 'member files or block devices')
    .option('-u, --uuid <uuid>', 'only members of this array')
    .option('-f, --force', 'start even if members are missing or stale (runs degraded)')
    .option('--no-sync', 'do not resync: report what assembly found and stop')
    .option('--json', 'print the assembly report and final status as JSON')
    .action(async (members: string[], o: Options) => {
      const started = Date.now();
      const opener = memberOpener(members, o);
      const { array, report } = await assembleArray({
        members,
        ...(opener !== undefined && { opener }),
        force: o.force ?? false,
        ...(o.uuid !== undefined && { uuid: o.uuid }),
        autoSync: o.sync !== false,
      });
      const atAssembly = array.status();
      const summary = (await array.waitSync()) ?? null;
      const status = array.status();
      await array.stop();
      if (o.json) {
        process.stdout.write(`${JSON.stringify({ report, atAssembly, sync: summary, status: { ...status, state: 'stopped' }, seconds: (Date.now() - started) / 1000 }, null, 2)}\n`);
        return;
      }
      const c = atAssembly.bitmap.counts;
      process.stdout.write(
        `assembled ${atAssembly.name} from ${members.length} members: ${report.unclean ? 'not stopped cleanly' : 'clean'}` +
          (atAssembly.bitmap.kind === 'none' ? '\n' : `; bitmap marks ${c.needSync + c.dirty + c.syncing} of ${Object.values(c).reduce((a, b) => a + b, 0)} chunks for sync\n`),
      );
      for (const s of report.stale) process.stdout.write(`stale member ${s.name} (events ${s.events}): ${s.reason}\n`);
      if (report.resyncReason !== undefined) process.stdout.write(`resync: ${report.resyncReason}\n`);
      for (const line of describeBitmapLoad(report.bitmap)) process.stdout.write(`${line}\n`);
      if (report.missingRoles.length > 0) process.stdout.write(`missing roles: ${report.missingRoles.join(', ')}\n`);
      if (summary) process.stdout.write(`${formatSyncSummary(summary)}\n`);
      process.stdout.write(formatArrayStatus({ ...status, state: 'stopped' }));
    });
}
