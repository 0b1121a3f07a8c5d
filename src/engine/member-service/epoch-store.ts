// The highest attach epoch each member has accepted, kept durably beside the member: the file
// DIR/.llraid-epochs/<basename> holds it as one decimal line. The member service keeps it, and so
// does an engine on this node that opens the member file itself with an epoch (local-members.ts):
// both read the record afresh each time, since the other may have raised it meanwhile. A new value is written to a temp
// file, fsynced, renamed over the old one, and the directory fsynced, so after a crash the
// record holds the old value or the new one, never less than what a client was answered with.
// The record follows the file name in its directory (not the device UUID), so it stays when a
// blank member gets its superblock.

import { basename, dirname, join } from 'node:path';
import { close, fsync, mkdir, open, readFile, rename, writeFile } from '../../common/callback-fs.js';
import { IoError } from '../../block/errors.js';
import { fsyncPath } from '../../block/fsync-path.js';
import type { MemberFile } from './member-files.js';

export const EPOCH_DIR = '.llraid-epochs';
/** Epochs are u64. */
export const MAX_EPOCH = (1n << 64n) - 1n;

/** What names a member's record: its directory and its name there. */
export type EpochRecordOwner = Pick<MemberFile, 'path' | 'dir' | 'basename'>;

/** The record owner of a member file named by `path` (its record is beside it, by that name). */
export function recordOwnerOf(path: string): EpochRecordOwner {
  return { path, dir: dirname(path), basename: basename(path) };
}

export class EpochStore {
  /** The record's path for `member`. */
  static pathOf(member: EpochRecordOwner): string {
    return join(member.dir, EPOCH_DIR, member.basename);
  }

  /** The member's accepted epoch, undefined when none was ever accepted. Rejects when the record is unreadable. */
  async read(member: EpochRecordOwner): Promise<bigint | undefined> {
    const path = EpochStore.pathOf(member);
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
        throw new IoError(`epoch record ${path}: cannot read it: ${(err as Error).message}`, { cause: err });
      }
      return undefined;
    }
    const epoch = parseEpoch(text.trim());
    if (epoch === undefined) throw new IoError(`epoch record ${path}: expected a decimal epoch, found ${JSON.stringify(text.slice(0, 40))}`);
    return epoch;
  }

  /** Records `epoch` for `member`, durably, before it resolves. */
  async write(member: EpochRecordOwner, epoch: bigint): Promise<void> {
    const dir = join(member.dir, EPOCH_DIR);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const path = EpochStore.pathOf(member);
    const temp = `${path}.${process.pid}.tmp`;
    const fd = await open(temp, 'w', 0o600);
    try {
      await writeFile(fd, `${epoch}\n`);
      await fsync(fd);
    } finally {
      await close(fd);
    }
    await rename(temp, path);
    await fsyncPath(dir);
  }
}

/** A u64 in decimal (no sign, no leading zeros but "0"), or undefined. */
export function parseEpoch(text: string): bigint | undefined {
  if (!/^(0|[1-9][0-9]{0,19})$/.test(text)) return undefined;
  const n = BigInt(text);
  return n <= MAX_EPOCH ? n : undefined;
}
