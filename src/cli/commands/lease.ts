// `llraid lease`: sets the lease of an engine started with `serve --lease-ms` (what the CSI node
// plugin does after each renewal of its node's Lease): the engine acknowledges writes for MS more
// milliseconds, and writes held during a lapse go on; 0 lapses it at once. For an operator whose
// node plugin is gone and whose engine holds writes, and for tests.

import type { Command } from 'commander';
import { controlRequest } from '../../engine/control/client.js';
import { MAX_LEASE_MS } from '../../engine/lease-gate.js';
import { UsageError } from '../report-error.js';
import { formatLease } from '../status-format.js';

export function register(program: Command): void {
  program
    .command('lease')
    .description('extend (or, with 0, lapse) the write lease of an engine started with serve --lease-ms')
    .argument('<ms>', 'the engine acknowledges writes for this many ms from now (0: stops at once)')
    .requiredOption('--control <socket>', 'control socket of the engine')
    .option('--json', 'print JSON')
    .action(async (msText: string, o: { control: string; json?: boolean }) => {
      const ms = Number(msText);
      if (!/^\d+$/.test(msText) || ms > MAX_LEASE_MS) throw new UsageError(`<ms>: expected whole milliseconds from 0 to ${MAX_LEASE_MS}, found ${JSON.stringify(msText)}`);
      const { lease } = await controlRequest(o.control, { op: 'lease', ms });
      process.stdout.write(o.json ? `${JSON.stringify(lease)}\n` : `${formatLease(lease!).trim()}\n`);
    });
}
