// Arithmetic in GF(2^8) with md's raid6 polynomial x^8+x^4+x^3+x^2+1 (0x11d) and generator 2.
// The bottom of the parity stack: syndrome.ts and recovery.ts build P/Q and rebuild blocks on it.

/** md's raid6 field polynomial, including the x^8 term. */
export const GF_POLY = 0x11d;

// EXP[i] = 2^i for i in [0, 510): doubled so that EXP[LOG[a] + LOG[b]] needs no modulo.
// LOG[0] is unused (0 has no logarithm); every caller checks for 0 first.
const EXP = new Uint8Array(510);
const LOG = new Uint8Array(256);
{
  let v = 1;
  for (let i = 0; i < 255; i++) {
    EXP[i] = v;
    EXP[i + 255] = v;
    LOG[v] = i;
    v <<= 1;
    if (v & 0x100) v ^= GF_POLY;
  }
}

/** a·b in GF(2^8). */
export function gfMul(a: number, b: number): number {
  if (a === 0 || b === 0) return 0;
  return EXP[LOG[a]! + LOG[b]!]!;
}

/** 2^n, the Q coefficient of the data block in syndrome slot n (n may be any integer). */
export function gfExp2(n: number): number {
  return EXP[((n % 255) + 255) % 255]!;
}

/** The multiplicative inverse; 0 has none. */
export function gfInv(a: number): number {
  if (a === 0) throw new RangeError('gf256: 0 has no inverse');
  return EXP[255 - LOG[a]!]!;
}

/** a / b in GF(2^8). */
export function gfDiv(a: number, b: number): number {
  return gfMul(a, gfInv(b));
}

// One 256-byte product table per constant, built on demand: multiplying a whole block by a
// constant (recovery) is then one table lookup per byte.
const mulTables = new Map<number, Uint8Array>();

/** The table t with t[x] = c·x. */
export function gfMulTable(c: number): Uint8Array {
  let t = mulTables.get(c);
  if (t === undefined) {
    t = new Uint8Array(256);
    for (let x = 0; x < 256; x++) t[x] = gfMul(c, x);
    mulTables.set(c, t);
  }
  return t;
}
