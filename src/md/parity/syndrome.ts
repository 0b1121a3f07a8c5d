// P and Q syndromes over the data blocks of one stripe: P is their XOR, Q = Σ 2^i·D_i in GF(2^8),
// with i the block's syndrome slot (md's order, see layout.ts). The stripe engine calls these.
//
// Blocks are equal-length byte arrays. Whole blocks whose length is a multiple of 16 go to the
// WebAssembly SIMD kernels (simd.ts; xorInto's from SIMD_XOR_MIN bytes). Otherwise, when every
// block is 4-byte aligned, the loops run over 32-bit words (four field elements at a time), else
// byte by byte. All give the same bytes.

import { gfMulTable } from './gf256.js';
import { simdFits, simdSyndromes, simdXor } from './simd.js';

/**
 * xorInto goes through the SIMD kernel from this length: a 4 KiB XOR took 2.0 µs in the 32-bit
 * loop and 0.7 µs copied through WebAssembly memory, and a raid5 write done now (read-modify-write)
 * makes two of them; below about 1 KiB the copies cost what the loop saves.
 */
const SIMD_XOR_MIN = 1024;

function aligned(blocks: readonly Uint8Array[]): boolean {
  for (const b of blocks) if ((b.byteOffset & 3) !== 0 || (b.length & 3) !== 0) return false;
  return true;
}

// Int32 rather than Uint32 views: XOR results stay small integers for V8, never heap numbers.
function words(b: Uint8Array): Int32Array {
  return new Int32Array(b.buffer, b.byteOffset, b.length >>> 2);
}

function checkLengths(what: string, blocks: readonly Uint8Array[], length: number): void {
  for (const b of blocks) {
    if (b.length !== length) {
      throw new RangeError(`${what}: every block must be ${length} bytes, found one of ${b.length}`);
    }
  }
}

/** out ^= src, element-wise. */
export function xorInto(out: Uint8Array, src: Uint8Array): void {
  checkLengths('xorInto', [src], out.length);
  if (out.length >= SIMD_XOR_MIN && simdFits(out.length)) {
    simdXor(out, src);
    return;
  }
  if (aligned([out, src])) {
    const o = words(out);
    const s = words(src);
    for (let i = 0; i < o.length; i++) o[i]! ^= s[i]!;
    return;
  }
  for (let i = 0; i < out.length; i++) out[i]! ^= src[i]!;
}

/** P = D_0 ^ D_1 ^ ... written into `p`, which may be one of the data blocks (P then replaces it). */
export function computeP(data: readonly Uint8Array[], p: Uint8Array): void {
  checkLengths('computeP', data, p.length);
  if (data.length > 1 && simdFits(p.length)) {
    // Tile by tile, every input read before the output is written: p may be one of data.
    simdSyndromes(data, p);
    return;
  }
  // p may be one of data: it then starts from its own bytes.
  if (!data.includes(p)) p.fill(0);
  for (const d of data) if (d !== p) xorInto(p, d);
}

// Multiplying four packed field elements by 2: shift each byte left, and fold the bytes whose top
// bit fell out back in with the low byte of the polynomial (0x1d).
function mul2Word(v: number): number {
  return ((v & 0x7f7f7f7f) << 1) ^ (((v >>> 7) & 0x01010101) * 0x1d);
}

/**
 * P and Q over `data` (in syndrome-slot order: data[i] has Q coefficient 2^i), by Horner's rule
 * from the highest slot down: q = ((D_{n-1}·2 + D_{n-2})·2 + ...) + D_0.
 */
export function computePQ(data: readonly Uint8Array[], p: Uint8Array, q: Uint8Array): void {
  const n = data.length;
  checkLengths('computePQ', data, p.length);
  checkLengths('computePQ', [q], p.length);
  if (n === 0) {
    p.fill(0);
    q.fill(0);
    return;
  }
  if (simdFits(p.length)) {
    simdSyndromes(data, p, q);
    return;
  }
  if (aligned([...data, p, q])) {
    const pw = words(p);
    const qw = words(q);
    const dw = data.map(words);
    for (let w = 0; w < pw.length; w++) {
      let pv = dw[n - 1]![w]!;
      let qv = pv;
      for (let i = n - 2; i >= 0; i--) {
        const d = dw[i]![w]!;
        pv ^= d;
        qv = mul2Word(qv) ^ d;
      }
      pw[w] = pv;
      qw[w] = qv;
    }
    return;
  }
  const two = gfMulTable(2);
  for (let b = 0; b < p.length; b++) {
    let pv = data[n - 1]![b]!;
    let qv = pv;
    for (let i = n - 2; i >= 0; i--) {
      const d = data[i]![b]!;
      pv ^= d;
      qv = two[qv]! ^ d;
    }
    p[b] = pv;
    q[b] = qv;
  }
}

/** out ^= c·src in GF(2^8): folds one data block's change into Q during read-modify-write. */
export function mulXorInto(out: Uint8Array, c: number, src: Uint8Array): void {
  checkLengths('mulXorInto', [src], out.length);
  if (c === 1) {
    xorInto(out, src);
    return;
  }
  const t = gfMulTable(c);
  for (let i = 0; i < out.length; i++) out[i]! ^= t[src[i]!]!;
}
