// One member of an array: its device, the superblock last written to it, its role and state.
// The array keeps members by role; a member's data area starts at its superblock's data_offset.
//
//   state      role       takes writes  serves reads  holds the bitmap
//   in_sync    0..n-1     yes           yes           yes
//   rebuilding 0..n-1     yes           no            no  (recovery fills it up to recoveryOffset)
//   spare      none       no            no            no
//   faulty     none       no            no            no  (recorded as 0xfffe in the others)
//
// An in_sync member that is write-mostly serves reads only when no other in-sync copy can.

import type { BlockDevice } from '../block/block-device.js';
import type { BitmapMember } from './write-intent-bitmap.js';
import { DEVFLAG_WRITE_MOSTLY, SECTOR, type Superblock } from './superblock.js';

/** How the array reaches a member, as its opener said (member-source.ts). */
export interface MemberTraits {
  /** Undefined: as the superblock's devflags say. */
  writeMostly?: boolean | undefined;
  remote?: boolean;
}

export type MemberState = 'in_sync' | 'rebuilding' | 'spare' | 'faulty';

export class Member implements BitmapMember {
  readonly name: string;
  readonly device: BlockDevice;
  /** The superblock this member holds (what was last read from or written to it). */
  sb: Superblock;
  state: MemberState;
  /** Role slot, or undefined for a spare or faulty member. */
  role: number | undefined;
  /** Rebuilding only: bytes of its data area (from the start) already recovered. */
  recoveryOffset = 0;
  /** Faulty only: why (the I/O error, or "failed by request"). */
  failure: string | undefined;
  /** I/O errors (EIO) this member returned since the array started. */
  errors = 0;
  /** Whether the array opened the device (and so closes it when done with it). */
  readonly owned: boolean;
  /**
   * Read only when no other in-sync copy can serve the read (md's write-mostly; raid1 and
   * raid10, the parity levels read where the data is). From the opener, or else the
   * superblock's WriteMostly devflag (an array made by mdadm --write-mostly); llraid never
   * changes that flag on disk: how this engine reaches a member is not the member's property.
   */
  readonly writeMostly: boolean;
  /** Reached over a network: if it drops out, the array watches for it to come back. */
  readonly remote: boolean;

  constructor(name: string, device: BlockDevice, sb: Superblock, owned: boolean, traits: MemberTraits = {}) {
    this.name = name;
    this.device = device;
    this.sb = sb;
    this.owned = owned;
    this.writeMostly = traits.writeMostly ?? (sb.devflags & DEVFLAG_WRITE_MOSTLY) !== 0;
    this.remote = traits.remote ?? false;
    this.state = 'spare';
    this.role = undefined;
  }

  get dataOffset(): number {
    return this.sb.dataOffset * SECTOR;
  }

  /** Byte offset of the bitmap area from the start of the device. */
  get bitmapOffset(): number {
    return (this.sb.superOffset + this.sb.bitmapOffset) * SECTOR;
  }

  /** Bytes of data area this member offers. */
  get dataBytes(): number {
    return this.sb.dataSize * SECTOR;
  }
}
