// Creating an array (mdadm --create): validates the geometry, writes the bitmap and then a fresh
// 1.2 superblock on every member, and starts the array. Members are laid out as mdadm does:
// superblock at sector 8, llbitmap at sector 16, data at sector 2048 (1 MiB).

import { MdArray, type ArrayIdentity, type ArrayTuning } from './array/md-array.js';
import { BITMAP_OFFSET_SECTORS, DATA_OFFSET_SECTORS, createBitmap, type BitmapKind } from './bitmap-setup.js';
import { MdError } from './errors.js';
import { Member } from './member.js';
import { openMembers, probeSuperblock, releaseMembers, type MemberOpener, type MemberSpec } from './member-source.js';
import { createPersonality, minMembers, usedMemberBytes } from './levels.js';
import { raid10NearLayout } from './raid10.js';
import { DEFAULT_ALGORITHM, parseLayout } from './parity/layout.js';
import { RESYNC_NONE, SECTOR, SUPER_OFFSET_SECTORS, formatUuid, type Superblock } from './superblock.js';
import { randomBytes } from '../common/lazy-builtins.js';
import { describeError, trace } from '../common/trace.js';

export interface CreateOptions extends ArrayTuning {
  /** Volume name, stored in set_name (1..32 bytes). */
  name: string;
  level: 0 | 1 | 10 | 5 | 6;
  members: readonly MemberSpec[];
  /** Stripe chunk in bytes for raid0/raid10 (default 512 KiB, mdadm's). */
  chunkSize?: number;
  /** raid5/raid6 layout: an mdadm name (left-symmetric, ...) or md algorithm number; default left-symmetric. */
  layout?: string | number;
  /** raid10 near copies (default 2). */
  nearCopies?: number;
  /** The members already hold identical data: no initial resync, bitmap chunks start Clean. */
  assumeClean?: boolean;
  /** Default llbitmap for raid1/raid10, none for raid0 (which has nothing to resync). */
  bitmap?: BitmapKind;
  /** Overwrite members that already carry an md superblock. */
  force?: boolean;
  /** Set UUID (16 bytes); random by default. */
  uuid?: Uint8Array;
  /** llbitmap tuning: seconds between daemon passes (default 30), idle seconds before cleaning (5). */
  daemonSleep?: number;
  barrierIdle?: number;
  /** llbitmap chunk in bytes; default chosen to fit the reserved space. */
  bitmapChunkSize?: number;
  /** Opens the members named by URI (remote ones); kept for re-add, add and the return check. */
  opener?: MemberOpener;
}

const DEFAULT_CHUNK = 512 * 1024;

export async function createArray(options: CreateOptions): Promise<MdArray> {
  const { level, name } = options;
  const nameBytes = Buffer.byteLength(name, 'utf8');
  if (nameBytes === 0 || nameBytes > 32) throw new MdError('EINVAL', `array name must be 1 to 32 bytes, found ${nameBytes}`);
  if (![0, 1, 10, 5, 6].includes(level)) throw new MdError('EINVAL', `expected level 0, 1, 10, 5 or 6, found ${String(level)}`);
  if (options.layout !== undefined && level !== 5 && level !== 6) throw new MdError('EINVAL', `layout: only raid5 and raid6 take a layout, found level ${level}`);
  const n = options.members.length;
  const near = options.nearCopies ?? 2;
  const fewest = minMembers(level, near);
  if (n < fewest) throw new MdError('EINVAL', `raid${level}: expected at least ${fewest} members, found ${n}`);
  const bitmapKind: BitmapKind = options.bitmap ?? (level === 0 ? 'none' : 'llbitmap');
  if (level === 0 && bitmapKind !== 'none') {
    throw new MdError('EINVAL', 'raid0: has no redundancy to resync, expected bitmap none, found llbitmap');
  }
  const chunkSize = level === 1 ? 0 : (options.chunkSize ?? DEFAULT_CHUNK);
  const layout = level === 10 ? raid10NearLayout(near) : level === 5 || level === 6 ? parseLayout(options.layout ?? DEFAULT_ALGORITHM) : 0;
  const uuid = Buffer.from(options.uuid ?? randomBytes(16));
  if (uuid.length !== 16) throw new MdError('EINVAL', `uuid must be 16 bytes, found ${uuid.length}`);

  const opened = await openMembers(options.members, options.opener);
  let array: MdArray | undefined;
  try {
    for (const m of opened) {
      const existing = await probeSuperblock(m);
      if (existing !== undefined && !options.force) {
        throw new MdError('EEXIST', `member ${m.name}: already carries an md superblock of array ${formatUuid(existing.setUuid)} ("${existing.setName}"); use force to overwrite it`);
      }
    }
    const dataOffsetBytes = DATA_OFFSET_SECTORS * SECTOR;
    const dataBytes = opened.map((m) => Math.floor((m.device.size - dataOffsetBytes) / 4096) * 4096);
    const minData = Math.min(...dataBytes);
    const needed = Math.max(4096, chunkSize);
    if (minData < needed) {
      const small = opened[dataBytes.indexOf(minData)]!;
      throw new MdError('ENOSPC', `member ${small.name}: expected at least ${dataOffsetBytes + needed} bytes (data offset + one chunk), found ${small.device.size}`);
    }
    const geometry = { level, raidDisks: n, layout, chunkSize, memberSize: minData };
    const personality = createPersonality(geometry);
    const usedBytes = usedMemberBytes(geometry);
    const now = Math.floor(Date.now() / 1000);
    const identity: ArrayIdentity = {
      uuid, name, ctime: now, level, layout, chunkSizeSectors: chunkSize / SECTOR, raidDisks: n,
      usedSectors: usedBytes / SECTOR, bitmapOffset: bitmapKind === 'llbitmap' ? BITMAP_OFFSET_SECTORS : 0,
    };
    const members = opened.map((m, i) => {
      const sb: Superblock = {
        featureMap: 0, setUuid: uuid, setName: name, ctime: now, level, layout, size: identity.usedSectors,
        chunkSize: identity.chunkSizeSectors, raidDisks: n, bitmapOffset: identity.bitmapOffset,
        dataOffset: DATA_OFFSET_SECTORS, dataSize: Math.floor((m.device.size - dataOffsetBytes) / SECTOR),
        superOffset: SUPER_OFFSET_SECTORS, recoveryOffset: 0, devNumber: i, cntCorrectedRead: 0,
        deviceUuid: randomBytes(16), devflags: 0, bblogShift: 0, bblogSize: 0, bblogOffset: 0, utime: now, events: 0n, resyncOffset: RESYNC_NONE,
        devRoles: Array.from({ length: n }, (_, r) => r),
      };
      const member = new Member(m.name, m.device, sb, m.owned, { writeMostly: m.writeMostly, remote: m.remote });
      member.state = 'in_sync';
      member.role = i;
      return member;
    });
    const needsInitialSync = level !== 0 && bitmapKind === 'none' && !options.assumeClean;
    array = new MdArray({
      identity, personality, members, devRoles: members.map((_, i) => i), events: 0n,
      resyncFrom: needsInitialSync ? 0 : null, tuning: options, opener: options.opener,
    });
    // Bitmap first, superblocks second: a failure here leaves no member claiming an array (B-i).
    array.attachBitmap(await createBitmap(bitmapKind, array.bitmapHost, {
      ioSize: array.blockSize, syncSize: personality.syncSize, dataOffsetSectors: DATA_OFFSET_SECTORS,
      bitmapOffsetSectors: BITMAP_OFFSET_SECTORS,
      ...(options.daemonSleep === undefined ? {} : { daemonSleep: options.daemonSleep }),
      ...(options.barrierIdle === undefined ? {} : { barrierIdle: options.barrierIdle }),
      ...(options.bitmapChunkSize === undefined ? {} : { chunkSize: options.bitmapChunkSize }),
    }, options.assumeClean ?? false));
    array.markRolesFilled();
    await array.run();
    return array;
  } catch (err) {
    // The error below says what went wrong; a bitmap that also fails to close says less.
    if (array?.bitmap !== undefined) await array.bitmap.close().catch((e: unknown) => trace('md', 'debug', () => `bitmap close after a failed start: ${describeError(e)}`));
    await releaseMembers(opened);
    throw err;
  }
}
