// The llbitmap sysfs texts (llbitmap.md A9), byte-exact: `bits`, `metadata` and their error
// texts. The bitmap class fills them from its counts and geometry; the CLI prints them as is.

import type { BitmapCounts } from '../write-intent-bitmap.js';

export const NO_BITMAP_TEXT = 'no bitmap\n';
export const BITMAP_IO_ERROR_TEXT = 'bitmap io error\n';

/** `bits`: one line per state, in state order, as the kernel's bits_show prints them. */
export function bitsText(c: BitmapCounts): string {
  return (
    `unwritten ${c.unwritten}\nclean ${c.clean}\ndirty ${c.dirty}\n` +
    `need sync ${c.needSync}\nsyncing ${c.syncing}\n` +
    `need sync unwritten ${c.needSyncUnwritten}\nsyncing unwritten ${c.syncingUnwritten}\n` +
    `clean unwritten ${c.cleanUnwritten}\n`
  );
}

export interface MetadataFields {
  /** Sectors. */
  chunksize: number;
  chunkshift: number;
  chunks: number;
  /** Bitmap offset in sectors, relative to the md superblock (signed: v1.0 puts it before). */
  offset: number;
  /** Seconds. */
  daemonSleep: number;
}

/** `metadata`: `chunksize %lu\nchunkshift %lu\nchunks %lu\noffset %llu\ndaemon_sleep %lu\n`. */
export function metadataText(m: MetadataFields): string {
  return (
    `chunksize ${m.chunksize}\nchunkshift ${m.chunkshift}\nchunks ${m.chunks}\n` +
    // %llu of a signed loff_t: a negative offset prints as its 64-bit two's complement.
    `offset ${BigInt.asUintN(64, BigInt(m.offset))}\ndaemon_sleep ${m.daemonSleep}\n`
  );
}
