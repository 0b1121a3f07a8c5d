// P/Q syndromes and recovery, checked against a byte-by-byte syndrome computed here, and every
// pair of missing blocks recovered exhaustively on small stripes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { computeP, computePQ, mulXorInto, xorInto } from '../../src/md/parity/syndrome.js';
import { recoverStripe, TooManyMissingError } from '../../src/md/parity/recovery.js';

function slowMul(a: number, b: number): number {
  let r = 0;
  for (let i = 0; i < 8; i++) if (b & (1 << i)) r ^= a << i;
  for (let bit = 14; bit >= 8; bit--) if (r & (1 << bit)) r ^= 0x11d << (bit - 8);
  return r;
}
function slowPow2(n: number): number {
  let v = 1;
  for (let i = 0; i < n; i++) v = slowMul(v, 2);
  return v;
}
function referencePQ(data: Uint8Array[]): { p: Uint8Array; q: Uint8Array } {
  const len = data[0]!.length;
  const p = new Uint8Array(len);
  const q = new Uint8Array(len);
  data.forEach((d, i) => {
    const g = slowPow2(i);
    for (let b = 0; b < len; b++) {
      p[b]! ^= d[b]!;
      q[b]! ^= slowMul(g, d[b]!);
    }
  });
  return { p, q };
}

function blocks(n: number, len: number, offset = 0): Uint8Array[] {
  // `offset` shifts each block inside a larger buffer to exercise the unaligned byte path.
  return Array.from({ length: n }, () => new Uint8Array(randomBytes(len + offset).buffer, offset, len));
}

// 4096-byte blocks take the WebAssembly SIMD kernels; 36-byte blocks the 32-bit word loop when
// aligned (offset 0) and the byte loop when not (offset 1).
for (const len of [4096, 36]) {
  for (const offset of [0, 1]) {
    test(`computeP and computePQ match the reference syndrome (${len}-byte blocks at offset ${offset})`, () => {
      for (const n of [1, 2, 3, 5, 16]) {
        const data = blocks(n, len, offset);
        const p = new Uint8Array(len);
        const q = new Uint8Array(len);
        computePQ(data, p, q);
        const ref = referencePQ(data);
        assert.deepEqual(p, ref.p);
        assert.deepEqual(q, ref.q);
        const p2 = new Uint8Array(len);
        computeP(data, p2);
        assert.deepEqual(p2, ref.p);
      }
    });
  }
}

// 1 KiB and longer (a multiple of 16) go through the SIMD kernel, in 32 KiB tiles; shorter ones
// and other lengths through the loops.
test('xorInto matches a byte-by-byte XOR at every length and offset, across the SIMD threshold and tiles', () => {
  for (const len of [16, 1008, 1024, 4096, 4100, 32 * 1024 + 48, 96 * 1024]) {
    for (const offset of [0, 1, 3]) {
      const [out, src] = blocks(2, len, offset) as [Uint8Array, Uint8Array];
      const want = Uint8Array.from(out, (b, i) => b ^ src[i]!);
      const before = Uint8Array.from(src);
      xorInto(out, src);
      assert.deepEqual(out, want, `length ${len} at offset ${offset}`);
      assert.deepEqual(src, before, 'the source is left as it was');
    }
  }
});

test('computeP over one of its own data blocks gives the P of the blocks as they were, in SIMD tiles and in the loops', () => {
  for (const len of [16, 1008, 4096, 32 * 1024 + 48, 96 * 1024]) {
    for (const over of [0, 2]) {
      const data = blocks(3, len, 0);
      const want = new Uint8Array(len);
      computeP(data, want);
      const others = data.filter((_, i) => i !== over).map((b) => Uint8Array.from(b));
      computeP(data, data[over]!);
      assert.deepEqual(data[over], want, `length ${len}, P over block ${over}`);
      assert.deepEqual(data.filter((_, i) => i !== over), others, 'the other blocks are left as they were');
    }
  }
});

test('read-modify-write deltas give the same P and Q as a full recompute', () => {
  const data = blocks(4, 32);
  const p = new Uint8Array(32);
  const q = new Uint8Array(32);
  computePQ(data, p, q);
  const fresh = randomBytes(32);
  const delta = new Uint8Array(data[2]!);
  xorInto(delta, fresh);
  xorInto(p, delta);
  mulXorInto(q, slowPow2(2), delta);
  data[2]!.set(fresh);
  const ref = referencePQ(data);
  assert.deepEqual(p, ref.p);
  assert.deepEqual(q, ref.q);
});

test('raid5: any one missing block (data or P) is rebuilt exactly', () => {
  for (const n of [1, 2, 3, 7]) {
    const data = blocks(n, 48);
    const { p } = referencePQ(data);
    for (let miss = 0; miss <= n; miss++) {
      const stripe = { data: data.map((d, i) => (i === miss ? null : d)), p: miss === n ? null : p };
      const out = { data: new Map([[miss, new Uint8Array(48).fill(0xaa)]]), p: new Uint8Array(48) };
      const r = recoverStripe(stripe, out);
      assert.deepEqual(r.data, data);
      assert.deepEqual(r.p, p);
    }
  }
});

test('raid6: every pair of missing blocks (data+data, data+P, data+Q, P+Q) is rebuilt exactly', () => {
  for (const n of [2, 3, 4, 6]) {
    const data = blocks(n, 40, 0);
    const { p, q } = referencePQ(data);
    // Indices 0..n-1 are data, n is P, n+1 is Q; every pair and every single.
    for (let a = 0; a < n + 2; a++) {
      for (let b = a; b < n + 2; b++) {
        const gone = new Set([a, b]);
        const out = {
          data: new Map<number, Uint8Array>(),
          p: new Uint8Array(40).fill(0x55),
          q: new Uint8Array(40).fill(0x55),
        };
        for (const i of gone) if (i < n) out.data.set(i, new Uint8Array(40).fill(0x77));
        const stripe = {
          data: data.map((d, i) => (gone.has(i) ? null : new Uint8Array(d))),
          p: gone.has(n) ? null : new Uint8Array(p),
          q: gone.has(n + 1) ? null : new Uint8Array(q),
        };
        const r = recoverStripe(stripe, out);
        assert.deepEqual(r.data, data, `missing ${a},${b} of ${n}`);
        assert.deepEqual(r.p, p);
        assert.deepEqual(r.q, q);
      }
    }
  }
});

test('more missing blocks than the level tolerates is a typed error', () => {
  const data = blocks(3, 8);
  const { p, q } = referencePQ(data);
  assert.throws(
    () => recoverStripe({ data: [null, null, data[2]!], p }, { data: new Map() }),
    TooManyMissingError,
  );
  assert.throws(
    () => recoverStripe({ data: [null, data[1]!, data[2]!], p: null, q: null }, { data: new Map() }),
    /3 missing blocks, the level tolerates at most 2/,
  );
  void q;
});
