// Splits an array byte range at chunk boundaries, for the striped levels (raid0, raid10): each
// segment lies inside one chunk, so it maps to one contiguous range on each member holding it.

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
  const out: Segment[] = [];
  let pos = offset;
  const end = offset + length;
  while (pos < end) {
    const chunk = Math.floor(pos / chunkSize);
    const inChunk = pos - chunk * chunkSize;
    const n = Math.min(chunkSize - inChunk, end - pos);
    out.push({ chunk, inChunk, length: n, requestOffset: pos - offset });
    pos += n;
  }
  return out;
}
