// One member of an array: its device, the superblock last written to it, its role and state.
// The array keeps members by role; a member's data area starts at its superblock's data_offset.
//
//   state      role       takes writes  serves reads  holds the bitmap
//   in_sync    0..n-1     yes           yes           yes
//   rebuilding 0..n-1     yes           no            no  (recovery fills it up to recoveryOffset)
//   spare      none       no            no            no
//   faulty     none       no            no            no  (recorded as 0xfffe in the others)

import type { BlockDevice } from '../block/block-device.js';
import type { BitmapMember } from './write-intent-bitmap.js';
import { SECTOR, type Superblock } from './superblock.js';

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

  constructor(name: string, device: BlockDevice, sb: Superblock, owned: boolean) {
    this.name = name;
    this.device = device;
    this.sb = sb;
    this.owned = owned;
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
