// Splits an array request into stripe rows and, inside a row, into column segments over which the
// set of data blocks being written is constant. The raid5/6 read and write paths walk these.
//
//   one row, chunk C, data blocks D0..D2, a write of row-data bytes [a, b):
//        col 0      a%C       b%C       C
//   D0   |          |#########|#########|     segment [a%C, b%C): D0 D1 written
//   D1   |##########|#########|#########|     segment [b%C, C):   D0 D1 written ... and so on:
//   D2   |##########|#########|         |     each segment has one fixed written set

import { forEachUnitPiece } from '../../block/unit-ranges.js';
import type { ParityLayout } from './layout.js';

/** The part of a request that falls in one stripe row. */
export interface RowPiece {
  row: number;
  /** Offset of the piece inside the row's data (0 .. rowBytes). */
  start: number;
  length: number;
  /** Offset of the piece inside the caller's buffer. */
  bufferOffset: number;
}

/** One column range of one row, with the data blocks the request covers there. */
export interface ColumnSegment {
  /** Column range inside the chunk: [lo, hi). */
  lo: number;
  hi: number;
  /** Logical data indices covered over the whole segment, ascending. */
  written: number[];
  /** For each entry of `written`: offset of its bytes in the caller's buffer. */
  source: number[];
}

/** Cuts [offset, offset+length) of the array into row pieces. */
export function splitRows(layout: ParityLayout, offset: number, length: number): RowPiece[] {
  const pieces: RowPiece[] = [];
  forEachUnitPiece(offset, length, layout.rowBytes, (row, start, n, bufferOffset) => pieces.push({ row, start, length: n, bufferOffset }));
  return pieces;
}

/** The column segments of one row piece, ordered by column. */
export function columnSegments(layout: ParityLayout, piece: RowPiece): ColumnSegment[] {
  const c = layout.chunkSize;
  const a = piece.start;
  const b = piece.start + piece.length;
  // Segment borders: where a data block's written status can change.
  const cuts = [...new Set([0, a % c, b % c === 0 ? c : b % c, c])].sort((x, y) => x - y);
  const segments: ColumnSegment[] = [];
  for (let k = 0; k + 1 < cuts.length; k++) {
    const lo = cuts[k]!;
    const hi = cuts[k + 1]!;
    const written: number[] = [];
    const source: number[] = [];
    for (let i = 0; i < layout.dataDisks; i++) {
      const s = i * c + lo;
      if (s >= a && i * c + hi <= b) {
        written.push(i);
        source.push(piece.bufferOffset + s - a);
      }
    }
    if (written.length > 0) segments.push({ lo, hi, written, source });
  }
  return segments;
}

/** `seg` cut at multiples of `slice` (a column count): segments with the same written blocks. */
export function sliceSegment(seg: ColumnSegment, slice: number): ColumnSegment[] {
  if (Math.floor(seg.lo / slice) === Math.floor((seg.hi - 1) / slice)) return [seg];
  const out: ColumnSegment[] = [];
  for (let lo = seg.lo; lo < seg.hi; ) {
    const hi = Math.min(seg.hi, (Math.floor(lo / slice) + 1) * slice);
    out.push({ lo, hi, written: seg.written, source: seg.source.map((s) => s + lo - seg.lo) });
    lo = hi;
  }
  return out;
}

/** The columns a row piece touches: exact inside one chunk, the whole chunk once it crosses one. */
export function columnSpan(layout: ParityLayout, piece: RowPiece): { lo: number; hi: number } {
  const c = layout.chunkSize;
  const a = piece.start;
  const b = piece.start + piece.length;
  if (Math.floor(a / c) === Math.floor((b - 1) / c)) return { lo: a % c, hi: ((b - 1) % c) + 1 };
  return { lo: 0, hi: c };
}
