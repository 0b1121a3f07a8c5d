// Rebuilding the missing blocks of one stripe from the survivors: any one block for raid5, any two
// for raid6 (data+data, data+P, data+Q, P+Q). The stripe engine calls this for degraded reads,
// degraded writes and recovery onto a new member.
//
// Formulas (H. Peter Anvin, "The mathematics of RAID-6"): with P', Q' the syndromes computed with
// the missing data blocks taken as zero, Px = P^P', Qx = Q^Q':
//   one data block x missing, P present:  Dx = Px
//   data x and P missing:                 Dx = Qx · 2^-x
//   data x < y missing:                   Dx = A·Px ^ B·Qx, Dy = Px ^ Dx,
//                                         A = 2^(y-x) / (2^(y-x) ^ 1), B = 2^-x / (2^(y-x) ^ 1)

import { MdError } from '../errors.js';
import { gfDiv, gfExp2 } from './gf256.js';
import { computeP, computePQ, mulXorInto, xorInto } from './syndrome.js';

/**
 * One stripe in syndrome order: `data[i]` is the block in slot i (null when missing), `p` and `q`
 * the parity blocks (`q` is undefined for raid5; null when missing). Missing blocks must be
 * supplied as `missing` buffers to fill, so the caller owns every allocation.
 */
export interface StripeBlocks {
  data: (Uint8Array | null)[];
  p: Uint8Array | null;
  q?: Uint8Array | null;
}

/** The stripe cannot be rebuilt: no complete copy of its data is left (EIO, as md's). */
export class TooManyMissingError extends MdError {
  constructor(missing: number, tolerated: number) {
    super('EIO', `stripe has ${missing} missing blocks, the level tolerates at most ${tolerated}`);
  }
}

/**
 * Fills the missing blocks of `stripe` in place. `out` supplies a buffer for each missing block:
 * `out.data[i]` for a missing data slot, `out.p` / `out.q` for missing parity.
 * Returns the rebuilt blocks in the same shape as `stripe`, with every block present.
 */
export function recoverStripe(
  stripe: StripeBlocks,
  out: { data: Map<number, Uint8Array>; p?: Uint8Array; q?: Uint8Array },
): { data: Uint8Array[]; p: Uint8Array; q?: Uint8Array } {
  const raid6 = stripe.q !== undefined;
  const missingData: number[] = [];
  stripe.data.forEach((d, i) => {
    if (d === null) missingData.push(i);
  });
  const pMissing = stripe.p === null;
  const qMissing = raid6 && stripe.q === null;
  const missing = missingData.length + (pMissing ? 1 : 0) + (qMissing ? 1 : 0);
  const tolerated = raid6 ? 2 : 1;
  if (missing > tolerated) throw new TooManyMissingError(missing, tolerated);

  const take = (what: string, b: Uint8Array | undefined): Uint8Array => {
    if (b === undefined) throw new RangeError(`recoverStripe: no output buffer for missing ${what}`);
    return b;
  };
  const data = stripe.data.map((d, i) => d ?? take(`data slot ${i}`, out.data.get(i)));
  for (const i of missingData) data[i]!.fill(0);
  const p = stripe.p ?? take('P', out.p);
  const q = raid6 ? (stripe.q ?? take('Q', out.q)) : undefined;
  const length = p.length;

  if (missingData.length === 0) {
    if (pMissing && qMissing) computePQ(data, p, q!);
    else if (pMissing) computeP(data, p);
    else if (qMissing) computePQ(data, new Uint8Array(length), q!);
    return { data, p, q };
  }

  if (missingData.length === 1) {
    const x = missingData[0]!;
    const dx = data[x]!;
    if (!pMissing) {
      // Dx = P ^ (XOR of the other data blocks).
      dx.set(p);
      data.forEach((d, i) => {
        if (i !== x) xorInto(dx, d);
      });
      if (qMissing) computePQ(data, new Uint8Array(length), q!);
      return { data, p, q };
    }
    // Data and P missing: Dx = (Q ^ Q') · 2^-x, then P from the whole data.
    const qPrime = new Uint8Array(length);
    computePQ(data, new Uint8Array(length), qPrime);
    xorInto(qPrime, q!);
    mulXorInto(dx, gfExp2(-x), qPrime);
    computeP(data, p);
    return { data, p, q };
  }

  // Two data blocks x < y missing, P and Q present.
  const [x, y] = missingData as [number, number];
  const pxy = new Uint8Array(length);
  const qxy = new Uint8Array(length);
  computePQ(data, pxy, qxy);
  xorInto(pxy, p);
  xorInto(qxy, q!);
  const gyx = gfExp2(y - x);
  const denom = gyx ^ 1;
  const a = gfDiv(gyx, denom);
  const b = gfDiv(gfExp2(-x), denom);
  const dx = data[x]!;
  const dy = data[y]!;
  mulXorInto(dx, a, pxy);
  mulXorInto(dx, b, qxy);
  dy.set(pxy);
  xorInto(dy, dx);
  return { data, p, q };
}
