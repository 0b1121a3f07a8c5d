// md's raid5/raid6 geometry: where each array byte lives (member, member offset) and which members
// hold P and Q in each stripe row. Reproduces raid5_compute_sector in drivers/md/raid5.c so that an
// llraid member holds the same bytes where Linux md would put them.
//
//   raid5 left-symmetric (2), 4 members   raid6 left-symmetric, 5 members
//   row 0:  D0  D1  D2  P                 row 0:  Q   D0  D1  D2  P
//   row 1:  D4  D5  P   D3                row 1:  D3  D4  D5  P   Q
//   row 2:  D8  P   D6  D7                row 2:  D7  D8  P   Q   D6
//   row 3:  P   D9  D10 D11               (Q coefficient slots count members from the one after Q)

import { MdError } from '../errors.js';

export type ParityLevel = 5 | 6;

/** md's ALGORITHM_* numbers (include/linux/raid/... raid5.h) for the layouts llraid supports. */
export const Algorithm = {
  leftAsymmetric: 0,
  rightAsymmetric: 1,
  leftSymmetric: 2,
  rightSymmetric: 3,
  parityFirst: 4, // ALGORITHM_PARITY_0
  parityLast: 5, // ALGORITHM_PARITY_N
} as const;
export type AlgorithmNumber = (typeof Algorithm)[keyof typeof Algorithm];

/** mdadm's layout names, index = algorithm number. */
const LAYOUT_NAMES = [
  'left-asymmetric',
  'right-asymmetric',
  'left-symmetric',
  'right-symmetric',
  'parity-first',
  'parity-last',
] as const;
export type LayoutName = (typeof LAYOUT_NAMES)[number];

/** md's default layout for raid5 and raid6. */
export const DEFAULT_ALGORITHM: AlgorithmNumber = Algorithm.leftSymmetric;

/** Accepts an mdadm layout name (plus the short forms la, ra, ls, rs) or an algorithm number. */
export function parseLayout(layout: string | number): AlgorithmNumber {
  const short: Record<string, number> = { la: 0, ra: 1, ls: 2, rs: 3 };
  let n: number | undefined;
  if (typeof layout === 'number') n = layout;
  else if (/^\d+$/.test(layout)) n = Number(layout);
  else n = short[layout] ?? LAYOUT_NAMES.indexOf(layout as LayoutName);
  if (!Number.isInteger(n) || n < 0 || n >= LAYOUT_NAMES.length) {
    throw new MdError(
      'EINVAL',
      `layout: expected one of ${LAYOUT_NAMES.join(', ')} (or 0-${LAYOUT_NAMES.length - 1}), found ${String(layout)}`,
    );
  }
  return n as AlgorithmNumber;
}

export function layoutName(algorithm: number): LayoutName {
  const name = LAYOUT_NAMES[algorithm];
  if (name === undefined) throw new MdError('EINVAL', `layout: unknown algorithm number ${algorithm}`);
  return name;
}

/** One stripe row: the role of every member (the same for rows equal modulo raidDisks). */
export interface StripeMap {
  /** Member holding P. */
  readonly pd: number;
  /** Member holding Q, or -1 for raid5. */
  readonly qd: number;
  /** dataMembers[i] = member holding logical data block i of the row (array order). */
  readonly dataMembers: readonly number[];
  /** qSlot[i] = Q syndrome slot (coefficient 2^slot) of logical data block i; raid6 only. */
  readonly qSlot: readonly number[];
  /** role[m] = logical data index held by member m, or -1 for P, -2 for Q. */
  readonly role: readonly number[];
}

export interface ParityLayoutOptions {
  level: ParityLevel;
  raidDisks: number;
  /** Bytes per chunk: a power of two, at least 4 KiB (md: a multiple of the page size). */
  chunkSize: number;
  algorithm?: number;
}

export const ROLE_P = -1;
export const ROLE_Q = -2;

export class ParityLayout {
  readonly level: ParityLevel;
  readonly raidDisks: number;
  readonly dataDisks: number;
  readonly chunkSize: number;
  readonly algorithm: AlgorithmNumber;
  /** Array bytes per stripe row: dataDisks chunks. */
  readonly rowBytes: number;
  // Every supported algorithm repeats with period raidDisks rows, so the maps are computed once.
  readonly #maps: StripeMap[];

  constructor(options: ParityLayoutOptions) {
    const { level, raidDisks, chunkSize } = options;
    if (level !== 5 && level !== 6) throw new MdError('EINVAL', `parity layout: expected level 5 or 6, found ${String(level)}`);
    const min = level === 5 ? 2 : 4;
    if (!Number.isInteger(raidDisks) || raidDisks < min || raidDisks > 256) {
      throw new MdError('EINVAL', `raid${level}: expected ${min} to 256 members, found ${raidDisks}`);
    }
    if (!Number.isSafeInteger(chunkSize) || chunkSize < 4096 || (chunkSize & (chunkSize - 1)) !== 0) {
      throw new MdError('EINVAL', `raid${level}: chunk size must be a power of two of at least 4096 bytes, found ${chunkSize}`);
    }
    this.level = level;
    this.raidDisks = raidDisks;
    this.dataDisks = raidDisks - (level === 5 ? 1 : 2);
    this.chunkSize = chunkSize;
    this.algorithm = parseLayout(options.algorithm ?? DEFAULT_ALGORITHM);
    this.rowBytes = this.dataDisks * chunkSize;
    this.#maps = [];
    for (let r = 0; r < raidDisks; r++) this.#maps.push(this.#compute(r));
  }

  /** The member roles of stripe row `row`. */
  stripe(row: number): StripeMap {
    return this.#maps[row % this.raidDisks]!;
  }

  /** Where array byte `offset` lives. */
  locate(offset: number): { row: number; dataIndex: number; member: number; memberOffset: number } {
    const chunk = Math.floor(offset / this.chunkSize);
    const inChunk = offset - chunk * this.chunkSize;
    const row = Math.floor(chunk / this.dataDisks);
    const dataIndex = chunk - row * this.dataDisks;
    const member = this.stripe(row).dataMembers[dataIndex]!;
    return { row, dataIndex, member, memberOffset: row * this.chunkSize + inChunk };
  }

  /** Array size for members that each hold `memberBytes` of data space (whole chunks only). */
  arraySize(memberBytes: number): number {
    return Math.floor(memberBytes / this.chunkSize) * this.rowBytes;
  }

  // raid5_compute_sector, for the row's stripe number `row` (md's `stripe`), all data indices.
  #compute(row: number): StripeMap {
    const n = this.raidDisks;
    const dd = this.dataDisks;
    const rot = row % n;
    let pd: number;
    let qd = -1;
    const map = (i: number): number => i;
    let member: (i: number) => number = map;
    if (this.level === 5) {
      switch (this.algorithm) {
        case Algorithm.leftAsymmetric:
          pd = dd - rot;
          member = (i) => (i >= pd ? i + 1 : i);
          break;
        case Algorithm.rightAsymmetric:
          pd = rot;
          member = (i) => (i >= pd ? i + 1 : i);
          break;
        case Algorithm.leftSymmetric:
          pd = dd - rot;
          member = (i) => (pd + 1 + i) % n;
          break;
        case Algorithm.rightSymmetric:
          pd = rot;
          member = (i) => (pd + 1 + i) % n;
          break;
        case Algorithm.parityFirst:
          pd = 0;
          member = (i) => i + 1;
          break;
        case Algorithm.parityLast:
          pd = dd;
          break;
      }
    } else {
      switch (this.algorithm) {
        case Algorithm.leftAsymmetric:
        case Algorithm.rightAsymmetric:
          pd = this.algorithm === Algorithm.leftAsymmetric ? n - 1 - rot : rot;
          if (pd === n - 1) {
            qd = 0; // Q D D D P
            member = (i) => i + 1;
          } else {
            qd = pd + 1; // D D P Q D
            member = (i) => (i >= pd ? i + 2 : i);
          }
          break;
        case Algorithm.leftSymmetric:
        case Algorithm.rightSymmetric:
          pd = this.algorithm === Algorithm.leftSymmetric ? n - 1 - rot : rot;
          qd = (pd + 1) % n;
          member = (i) => (pd + 2 + i) % n;
          break;
        case Algorithm.parityFirst:
          pd = 0;
          qd = 1;
          member = (i) => i + 2;
          break;
        case Algorithm.parityLast:
          pd = dd;
          qd = dd + 1;
          break;
      }
    }
    const dataMembers = Array.from({ length: dd }, (_, i) => member(i));
    const role = new Array<number>(n).fill(ROLE_P);
    dataMembers.forEach((m, i) => (role[m] = i));
    role[pd] = ROLE_P;
    if (qd >= 0) role[qd] = ROLE_Q;
    // Q slots follow the members in disk order starting just after Q (raid6_d0), wrapping.
    const qSlot = new Array<number>(dd).fill(0);
    if (this.level === 6) {
      const d0 = qd === n - 1 ? 0 : qd + 1;
      let slot = 0;
      for (let k = 0; k < n; k++) {
        const m = (d0 + k) % n;
        const r = role[m]!;
        if (r >= 0) qSlot[r] = slot++;
      }
    } else {
      for (let i = 0; i < dd; i++) qSlot[i] = i;
    }
    return { pd, qd, dataMembers, qSlot, role };
  }
}
