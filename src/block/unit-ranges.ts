// Cutting a byte range at the boundaries of a fixed unit (a chunk, a stripe row, a memory page):
// each piece lies inside one unit. The striped levels map a piece to one contiguous range per
// member; the memory device to one page.

export interface UnitPiece {
  /** Which unit: the byte offset's unit number. */
  unit: number;
  /** Byte offset of the piece inside its unit. */
  inUnit: number;
  length: number;
  /** Offset of the piece from the start of the range (and of its data buffer). */
  rangeOffset: number;
}

/** Calls `fn` for each piece of [offset, offset+length), in order; no allocation per piece. */
export function forEachUnitPiece(
  offset: number, length: number, unitSize: number, fn: (unit: number, inUnit: number, length: number, rangeOffset: number) => void,
): void {
  let pos = offset;
  const end = offset + length;
  while (pos < end) {
    const unit = Math.floor(pos / unitSize);
    const inUnit = pos - unit * unitSize;
    const n = Math.min(unitSize - inUnit, end - pos);
    fn(unit, inUnit, n, pos - offset);
    pos += n;
  }
}

/** The pieces of [offset, offset+length), in order. */
export function unitPieces(offset: number, length: number, unitSize: number): UnitPiece[] {
  const out: UnitPiece[] = [];
  forEachUnitPiece(offset, length, unitSize, (unit, inUnit, n, rangeOffset) => out.push({ unit, inUnit, length: n, rangeOffset }));
  return out;
}
