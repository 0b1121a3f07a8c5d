// `llraid create`: writes the metadata of a new array onto its members (creating sparse member
// files of --size when asked), as `mdadm --create` does, and leaves the array stopped cleanly.

import type { Command } from 'commander';
import { access, writeFile } from 'node:fs/promises';
import { createArray, type CreateOptions } from '../../md/index.js';
import { parseSize } from '../sizes.js';
import { formatArrayStatus } from '../status-format.js';
import { UsageError } from '../report-error.js';

interface Options {
  level: string;
  name: string;
  chunk?: string;
  copies?: string;
  layout?: string;
  bitmap?: string;
  bitmapChunk?: string;
  daemonSleep?: string;
  assumeClean?: boolean;
  size?: string;
  force?: boolean;
  json?: boolean;
}

export function register(program: Command): void {
  program
    .command('create')
    .description('create an array on member files or block devices (like mdadm --create)')
    .argument('<members...>', 'member files or block devices, in role order')
    .requiredOption('-l, --level <level>', 'RAID level: 0, 1, 10, 5 or 6')
    .requiredOption('-N, --name <name>', 'array (volume) name, 1 to 32 bytes')
    .option('-c, --chunk <size>', 'stripe chunk for raid0/10/5/6 (default 512K)')
    .option('--copies <n>', 'raid10 near copies (default 2)')
    .option('--layout <layout>', 'raid5/6 layout: left-symmetric (default), right-symmetric, left-asymmetric, right-asymmetric')
    .option('-b, --bitmap <kind>', 'llbitmap (default for redundant levels) or none')
    .option('--bitmap-chunk <size>', 'llbitmap chunk (default: the smallest from 64K that fits)')
    .option('--daemon-sleep <seconds>', 'llbitmap daemon period (default 30)')
    .option('--assume-clean', 'the members already hold identical data: no initial sync, bitmap starts Clean')
    .option('-z, --size <size>', 'create missing member files, sparse, of this size')
    .option('-f, --force', 'overwrite members that already carry an md superblock')
    .option('--json', 'print the new array status as JSON')
    .action(async (members: string[], o: Options) => {
      if (o.size !== undefined) {
        const size = parseSize(o.size, '--size');
        for (const m of members) {
          const exists = await access(m).then(() => true, () => false);
          if (!exists) {
            await writeFile(m, '', { mode: 0o600 });
            const { truncate } = await import('node:fs/promises');
            await truncate(m, size);
          }
        }
      }
      const options = {
        name: o.name,
        level: parseLevel(o.level),
        members,
        ...(o.chunk !== undefined && { chunkSize: parseSize(o.chunk, '--chunk') }),
        ...(o.copies !== undefined && { nearCopies: parseCount(o.copies, '--copies') }),
        ...(o.layout !== undefined && { layout: o.layout }),
        ...(o.bitmap !== undefined && { bitmap: parseBitmap(o.bitmap) }),
        ...(o.bitmapChunk !== undefined && { bitmapChunkSize: parseSize(o.bitmapChunk, '--bitmap-chunk') }),
        ...(o.daemonSleep !== undefined && { daemonSleep: parseCount(o.daemonSleep, '--daemon-sleep') }),
        assumeClean: o.assumeClean ?? false,
        force: o.force ?? false,
        autoSync: false,
      };
      const array = await createArray(options as CreateOptions);
      const status = array.status();
      await array.stop();
      process.stdout.write(o.json ? `${JSON.stringify(status, null, 2)}\n` : `created ${formatArrayStatus({ ...status, state: 'stopped' })}`);
    });
}

function parseLevel(text: string): CreateOptions['level'] {
  const level = Number(text.replace(/^raid/, ''));
  if (![0, 1, 10, 5, 6].includes(level)) throw new UsageError(`--level: expected 0, 1, 10, 5 or 6, found ${JSON.stringify(text)}`);
  return level as CreateOptions['level'];
}

function parseBitmap(text: string): 'llbitmap' | 'none' {
  if (text !== 'llbitmap' && text !== 'none') throw new UsageError(`--bitmap: expected llbitmap or none, found ${JSON.stringify(text)}`);
  return text;
}

export function parseCount(text: string, what: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 1) throw new UsageError(`${what}: expected a positive whole number, found ${JSON.stringify(text)}`);
  return n;
}
