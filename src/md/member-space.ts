// What a grow checks before it extends any member (MdArray.grow): that the new end of every
// member's data area is a byte offset llraid can address, and that the filesystems under member
// files can hold them fully written. Either failure is a clear error naming a member, raised
// while nothing has changed yet.

import { baseDevice } from '../block/filter-device.js';
import { FileDevice } from '../block/file-device.js';
import { spaceShortfall } from '../block/free-space.js';
import { MdError } from './errors.js';
import type { Member } from './member.js';

/**
 * The largest byte offset llraid addresses on a member: 2^53 - 1, the largest whole number a
 * JavaScript number holds exactly (byte offsets and sizes are numbers from the CLI to the file
 * I/O). The superblock's u64 sector fields would go 512 * 2^64 bytes further.
 */
export const LARGEST_BYTE_OFFSET = Number.MAX_SAFE_INTEGER;

/**
 * `requestedBytes`: the data bytes per member asked for; `usedBytes`: what the level uses of them
 * (whole stripes), which the member files grow to hold.
 */
export async function checkMemberGrowth(arrayName: string, members: readonly Member[], requestedBytes: number, usedBytes: number): Promise<void> {
  const deepest = members.reduce<Member | undefined>((a, m) => (a === undefined || m.dataOffset > a.dataOffset ? m : a), undefined);
  if (deepest !== undefined && deepest.dataOffset + requestedBytes > LARGEST_BYTE_OFFSET) {
    throw new MdError(
      'EINVAL',
      `array ${arrayName}: grow: expected at most ${LARGEST_BYTE_OFFSET - deepest.dataOffset} bytes per member, found ${requestedBytes}: ` +
        `member ${deepest.name} keeps its data from byte ${deepest.dataOffset}, and llraid addresses bytes up to ${LARGEST_BYTE_OFFSET} ` +
        '(2^53 - 1, the largest whole number a JavaScript number holds exactly)',
    );
  }
  const files = members.flatMap((m) => {
    const base = baseDevice(m.device);
    return base instanceof FileDevice && !base.isBlockDevice ? [{ path: base.path, size: m.dataOffset + usedBytes, name: m.name }] : [];
  });
  const short = await spaceShortfall(files);
  if (short !== undefined) {
    const names = short.paths.map((p) => files.find((f) => f.path === p)?.name ?? p);
    throw new MdError(
      'ENOSPC',
      `member ${names[0]}: growing array ${arrayName} to ${usedBytes} bytes per member needs ${short.neededBytes} more bytes ` +
        `on the filesystem holding ${names.join(', ')} (to hold ${names.length === 1 ? 'it' : 'them'} fully written), found ${short.freeBytes} bytes free`,
    );
  }
}
