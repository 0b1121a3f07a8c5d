// Read balancing for mirrored levels (raid1, raid10): among the copies that can serve a read,
// pick the member with the fewest reads in flight, breaking ties by the nearest last position
// ("nearest head", as md's read_balance does for rotational members).

/** A place a byte range lives: a role and a byte offset in that member's data area. */
export interface Copy {
  role: number;
  offset: number;
}

export class ReadBalancer {
  /** pending[role] = reads issued to that role and not yet completed. */
  private readonly pending: number[];
  /** head[role] = the member offset just past the last read issued to it. */
  private readonly head: number[];

  constructor(raidDisks: number) {
    this.pending = new Array<number>(raidDisks).fill(0);
    this.head = new Array<number>(raidDisks).fill(0);
  }

  /** Orders candidate copies best first. */
  rank(copies: readonly Copy[]): Copy[] {
    return [...copies].sort((a, b) => this.compare(a.role, a.offset, b.role, b.offset));
  }

  /** Below 0 when role `a` at member offset `offsetA` is the better copy, above 0 when `b` is. */
  compare(a: number, offsetA: number, b: number, offsetB: number): number {
    const p = (this.pending[a] ?? 0) - (this.pending[b] ?? 0);
    if (p !== 0) return p;
    return Math.abs((this.head[a] ?? 0) - offsetA) - Math.abs((this.head[b] ?? 0) - offsetB);
  }

  begin(copy: Copy, length: number): void {
    this.pending[copy.role] = (this.pending[copy.role] ?? 0) + 1;
    this.head[copy.role] = copy.offset + length;
  }

  /** A read done at once (no time in flight): only the head moves. */
  issuedNow(role: number, offset: number, length: number): void {
    this.head[role] = offset + length;
  }

  end(copy: Copy): void {
    this.pending[copy.role] = Math.max(0, (this.pending[copy.role] ?? 0) - 1);
  }
}
