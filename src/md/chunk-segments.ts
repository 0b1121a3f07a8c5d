// Splits an array byte range at chunk boundaries, for the striped levels (raid0, raid10): each
// segment lies inside one chunk, so it maps to one contiguous range on each member holding it.

import { unitPieces } from '../block/unit-ranges.js';

export interface Segment {
  /** Chunk number in array space. */
  chunk: number;
  /** Byte offset inside the chunk. */
  inChunk: number;
  length: number;
  /** Offset of this segment in the request (and in its data buffer). */
  requestOffset: number;
}

export function segments(offset: number, length: number, chunkSize: number): Segment[] {
  return unitPieces(offset, length, chunkSize).map((p) => ({ chunk: p.unit, inChunk: p.inUnit, length: p.length, requestOffset: p.rangeOffset }));
}
