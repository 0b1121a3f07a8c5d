// Creating and loading an array's write-intent bitmap: llbitmap in the space between the
// superblock and the data (bitmap at super + 8 sectors, up to data_offset), or NoBitmap.

import { LlBitmap } from './llbitmap/index.js';
import { NoBitmap } from './no-bitmap.js';
import { SECTOR, SUPER_OFFSET_SECTORS } from './superblock.js';
import type { BitmapHost, WriteIntentBitmap } from './write-intent-bitmap.js';

export type BitmapKind = 'llbitmap' | 'none';

/** mdadm's default: the bitmap 8 sectors after the superblock. */
export const BITMAP_OFFSET_SECTORS = 8;
/** mdadm's default data offset for new 1.2 arrays: 1 MiB. */
export const DATA_OFFSET_SECTORS = 2048;

export interface BitmapParams {
  ioSize: number;
  syncSize: number;
  dataOffsetSectors: number;
  bitmapOffsetSectors: number;
  daemonSleep?: number;
  barrierIdle?: number;
  chunkSize?: number;
  /** Loading only: resync every written chunk (LlBitmapLoadOptions.stale). */
  stale?: boolean;
}

/** Bytes reserved for the bitmap: from its start to the data offset. */
export function bitmapSpace(p: BitmapParams): number {
  return (p.dataOffsetSectors - SUPER_OFFSET_SECTORS - p.bitmapOffsetSectors) * SECTOR;
}

export async function createBitmap(kind: BitmapKind, host: BitmapHost, p: BitmapParams, assumeClean: boolean): Promise<WriteIntentBitmap> {
  if (kind === 'none') return new NoBitmap();
  return LlBitmap.create(host, {
    ioSize: p.ioSize,
    syncSize: p.syncSize,
    spaceBytes: bitmapSpace(p),
    offsetSectors: p.bitmapOffsetSectors,
    assumeClean,
    ...(p.daemonSleep === undefined ? {} : { daemonSleep: p.daemonSleep }),
    ...(p.barrierIdle === undefined ? {} : { barrierIdle: p.barrierIdle }),
    ...(p.chunkSize === undefined ? {} : { chunkSize: p.chunkSize }),
  });
}

export async function loadBitmap(kind: BitmapKind, host: BitmapHost, p: BitmapParams): Promise<WriteIntentBitmap> {
  if (kind === 'none') return new NoBitmap();
  return LlBitmap.load(host, {
    ioSize: p.ioSize,
    syncSize: p.syncSize,
    offsetSectors: p.bitmapOffsetSectors,
    ...(p.barrierIdle === undefined ? {} : { barrierIdle: p.barrierIdle }),
    ...(p.stale === undefined ? {} : { stale: p.stale }),
  });
}
