// `llraid create`: writes the metadata of a new array onto its members (creating sparse member
// files of --size when asked), as `mdadm --create` does, and leaves the array stopped cleanly.

import type { Command } from 'commander';
import { access, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { NoSpaceError } from '../../block/errors.js';
import { spaceShortfall } from '../../block/free-space.js';
import { createArray, isUriName, type CreateOptions } from '../../md/index.js';
import { formatBytes, parseSize } from '../../units/byte-sizes.js';
import { formatArrayStatus } from '../status-format.js';
import { UsageError } from '../report-error.js';
import { addRemoteOptions, memberOpener, type RemoteOptions } from '../remote-options.js';

interface Options extends RemoteOptions {
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
  addRemoteOptions(program
    .command('create'))
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
      // Every argument is checked before a member file is made.
      const opener = memberOpener(members, o);
      const options: CreateOptions = {
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
        ...(opener !== undefined && { opener }),
      };
      const size = o.size === undefined ? undefined : parseSize(o.size, '--size');
      const made = size === undefined ? [] : await createMemberFiles(members, size);
      let array;
      try {
        array = await createArray(options);
      } catch (err) {
        // Bad input leaves nothing behind: the member files this command made go again.
        await Promise.all(made.map((f) => rm(f, { force: true })));
        throw err;
      }
      const status = array.status();
      await array.stop();
      process.stdout.write(o.json ? `${JSON.stringify(status, null, 2)}\n` : `created ${formatArrayStatus({ ...status, state: 'stopped' })}`);
    });
}

/**
 * Makes the members that do not exist yet as sparse files of `size` bytes, once their filesystems
 * are known to hold them fully written; returns the files it made.
 */
async function createMemberFiles(members: string[], size: number): Promise<string[]> {
  const missing: string[] = [];
  for (const m of members) {
    // A remote member is a file its own node made; its member service exports it.
    if (isUriName(m) || (await access(m).then(() => true, () => false))) continue;
    const parent = dirname(m);
    if (!(await stat(parent).then((st) => st.isDirectory(), () => false))) {
      throw new UsageError(`member ${m}: expected a directory ${parent} to create it in, found none`);
    }
    missing.push(m);
  }
  // One file under two names needs its space once.
  const short = await spaceShortfall([...new Map(missing.map((path) => [resolve(path), { path, size }])).values()]);
  if (short !== undefined) {
    throw new NoSpaceError(
      `member ${short.paths[0]}: ${short.paths.length === 1 ? 'a member file' : `${short.paths.length} member files`} of ${formatBytes(size)} (${size} bytes) ` +
        `need ${formatBytes(short.neededBytes)} (${short.neededBytes} bytes) on the filesystem holding ${short.paths.join(', ')}, ` +
        `found ${formatBytes(short.freeBytes)} (${short.freeBytes} bytes) free`,
    );
  }
  const made: string[] = [];
  try {
    for (const m of missing) {
      // A file that exists by now is not ours to size: the same file given under two names
      // (createArray refuses that, naming both), or one another process made meanwhile.
      const fresh = await writeFile(m, '', { mode: 0o600, flag: 'wx' }).then(() => true, (err: NodeJS.ErrnoException) => {
        if (err.code === 'EEXIST') return false;
        throw err;
      });
      if (!fresh) continue;
      made.push(m);
      await truncate(m, size).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'EFBIG') throw err;
        throw new NoSpaceError(
          `member ${m}: cannot make a file of ${formatBytes(size)} (${size} bytes): larger than the filesystem's largest file ` +
            "or this process's file size limit (ulimit -f)",
          { cause: err },
        );
      });
    }
  } catch (err) {
    await Promise.all(made.map((f) => rm(f, { force: true })));
    throw err;
  }
  return made;
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
