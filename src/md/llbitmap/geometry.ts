// llbitmap geometry (llbitmap.md A1, A2): chunk size selection within the reserved space, and
// where chunk i's byte lives (4 KiB page, offset, io_size block). Pure arithmetic in bytes;
// the on-disk fields it feeds (chunksize, sync_size, sectors_reserved) are in sectors.

import { SECTOR } from '../../block/block-device.js';
export { SECTOR };
import { MdError } from '../errors.js';
import { BITMAP_DATA_OFFSET } from './bitmap-superblock.js';

export const PAGE_SIZE = 4096;
/** 128 sectors (64 KiB): the largest raid1/10 sync I/O, the smallest chunk llbitmap picks. */
export const MIN_CHUNK_SIZE = 128 * SECTOR;
/** chunksize is a u32 of sectors in the superblock. */
export const MAX_CHUNK_SIZE = 2 ** 31 * SECTOR;

export interface Geometry {
  /** Bytes of sync space covered. */
  syncSize: number;
  /** Bytes per chunk, a power of two. */
  chunkSize: number;
  chunks: number;
  /** ceil((BITMAP_DATA_OFFSET + chunks) / PAGE_SIZE). */
  pages: number;
  /** Bytes per bitmap write (the array's logical block size). */
  ioSize: number;
  /** Reserved bytes rounded down to whole io blocks: no bitmap I/O ever reaches past this. */
  usableSpace: number;
}

/** Whether `chunks` state bytes fit: B-f, the 1024-byte data offset counts against the space. */
export function fits(chunks: number, usableSpace: number): boolean {
  return BITMAP_DATA_OFFSET + chunks <= usableSpace;
}

export function chunkCount(syncSize: number, chunkSize: number): number {
  return Math.ceil(syncSize / chunkSize);
}

/** Reserved space in whole io blocks (a partial last block could not be written atomically). */
export function usableSpace(spaceBytes: number, ioSize: number): number {
  return Math.floor(spaceBytes / ioSize) * ioSize;
}

/**
 * A2 chunk size selection: start at MIN_CHUNK_SIZE and double while the chunks do not fit.
 * Refuses (ENOSPC) when not even one chunk fits after the data offset.
 */
export function chooseChunkSize(syncSize: number, usable: number): number {
  if (!fits(1, usable)) {
    throw new MdError(
      'ENOSPC',
      `llbitmap: expected at least ${BITMAP_DATA_OFFSET + 1} bytes of usable bitmap space, found ${usable}`,
    );
  }
  let chunkSize = MIN_CHUNK_SIZE;
  while (!fits(chunkCount(syncSize, chunkSize), usable)) chunkSize *= 2;
  return chunkSize;
}

export function isPowerOfTwo(n: number): boolean {
  return Number.isSafeInteger(n) && n > 0 && 2 ** Math.round(Math.log2(n)) === n;
}

/** Checks the io size: a power of two from 512 to 4096 (a logical block size). */
export function checkIoSize(ioSize: number): void {
  if (!isPowerOfTwo(ioSize) || ioSize < SECTOR || ioSize > PAGE_SIZE) {
    throw new MdError('EINVAL', `llbitmap: expected an io size that is a power of two from 512 to 4096, found ${ioSize}`);
  }
}

/** Checks the sync space size: a positive whole number of sectors. */
export function checkSyncSize(syncSize: number): void {
  if (!Number.isSafeInteger(syncSize) || syncSize <= 0 || syncSize % SECTOR !== 0) {
    throw new MdError('EINVAL', `llbitmap: expected a sync size that is a positive multiple of 512 bytes, found ${syncSize}`);
  }
}

export function checkSpace(spaceBytes: number): void {
  if (spaceBytes === 0) {
    // A2: an array with no room reserved for a bitmap cannot have one.
    throw new MdError('ENOSPC', 'llbitmap: expected space reserved for the bitmap, found none (0 bytes)');
  }
  if (!Number.isSafeInteger(spaceBytes) || spaceBytes <= 0 || spaceBytes % SECTOR !== 0) {
    throw new MdError(
      'EINVAL',
      `llbitmap: expected a reserved space that is a positive multiple of 512 bytes, found ${spaceBytes}`,
    );
  }
  if (spaceBytes / SECTOR > 0xffffffff) {
    throw new MdError('EINVAL', `llbitmap: expected a reserved space below 2^32 sectors, found ${spaceBytes} bytes`);
  }
}

/** Builds the geometry, checking that the chunk size is valid and its chunks fit (B-f). */
export function makeGeometry(syncSize: number, chunkSize: number, ioSize: number, spaceBytes: number): Geometry {
  const usable = usableSpace(spaceBytes, ioSize);
  if (!isPowerOfTwo(chunkSize) || chunkSize < SECTOR || chunkSize > MAX_CHUNK_SIZE) {
    throw new MdError(
      'EINVAL',
      `llbitmap: expected a chunk size that is a power of two from 512 bytes to 1 TiB, found ${chunkSize}`,
    );
  }
  const chunks = chunkCount(syncSize, chunkSize);
  if (!fits(chunks, usable)) {
    throw new MdError(
      'ENOSPC',
      `llbitmap: chunk size ${chunkSize} needs ${BITMAP_DATA_OFFSET + chunks} bytes of bitmap space, found ${usable}`,
    );
  }
  return {
    syncSize,
    chunkSize,
    chunks,
    pages: Math.ceil((BITMAP_DATA_OFFSET + chunks) / PAGE_SIZE),
    ioSize,
    usableSpace: usable,
  };
}

/** Page holding chunk i's byte. */
export function pageOf(chunk: number): number {
  return Math.floor((BITMAP_DATA_OFFSET + chunk) / PAGE_SIZE);
}

/** Offset of chunk i's byte inside its page. */
export function offsetInPage(chunk: number): number {
  return (BITMAP_DATA_OFFSET + chunk) % PAGE_SIZE;
}

/** First chunk whose byte is in page `page`. */
export function firstChunkOfPage(page: number): number {
  return page === 0 ? 0 : page * PAGE_SIZE - BITMAP_DATA_OFFSET;
}

/** Bytes of page `page` in use (superblock area and chunk bytes): what a full write covers. */
export function usedBytesOfPage(g: Geometry, page: number): number {
  return Math.min(PAGE_SIZE, BITMAP_DATA_OFFSET + g.chunks - page * PAGE_SIZE);
}
