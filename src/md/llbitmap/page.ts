// One 4 KiB llbitmap page in memory: its bytes (superblock area or chunk states) and the mask of
// io_size blocks changed since the last write-out. The kernel's per-page barrier (llbitmap.md A7)
// is replaced by per-chunk bookkeeping (chunk-activity.ts).

import { PAGE_SIZE } from './geometry.js';

export class BitmapPage {
  /** The page as on disk: chunk i's state at (1024 + i) % 4096 of page (1024 + i) >> 12. */
  readonly data = Buffer.alloc(PAGE_SIZE);
  /** dirty[b] = 1 when block b changed since it was last handed to a write-out. */
  readonly dirty: Uint8Array;
  /** written[b]: the write-out that last took block b (llbitmap.ts counts them from 1). */
  readonly written: Uint32Array;
  /** Set by flush (stop): the daemon cleans this page's chunks without waiting for barrier_idle. */
  flush = false;

  constructor(blocksPerPage: number) {
    this.dirty = new Uint8Array(blocksPerPage);
    this.written = new Uint32Array(blocksPerPage);
  }
}
