// P and Q over whole stripe blocks with WebAssembly SIMD: 16 field elements per instruction, the
// hot path of full-stripe and reconstruct writes. syndrome.ts calls it for large aligned blocks and
// keeps its plain JavaScript loops as the reference and the fallback.
//
// The module is emitted byte by byte below (no toolchain needed). Its two functions, as WAT:
//   (func $xor (param $dst i32) (param $src i32) (param $len i32)      ;; dst ^= src
//     for i in 0..len step 16: v128.store(dst+i, v128.xor(v128.load(dst+i), v128.load(src+i))))
//   (func $pq (param $data i32) (param $n i32) (param $len i32) (param $p i32) (param $q i32)
//     ;; blocks at data + k*len, k = syndrome slot; Horner from the top slot down:
//     ;; q = 2·q ^ D_k where 2·v = i8x16.add(v, v) ^ (i8x16.shr_s(v, 7) & 0x1d) per byte
//     for off in 0..len step 16: p, q = D_{n-1}; for k = n-2..0: p ^= D_k; q = 2·q ^ D_k)

const SIMD = 0xfd;
const op = {
  block: 0x02, loop: 0x03, br: 0x0c, brIf: 0x0d, end: 0x0b,
  get: 0x20, set: 0x21, tee: 0x22,
  i32const: 0x41, i32ltS: 0x48, i32geU: 0x4f, i32add: 0x6a, i32sub: 0x6b, i32mul: 0x6c,
} as const;
const v128 = {
  load: [SIMD, 0x00, 0x00, 0x00], // align 1 (a hint only), offset 0
  store: [SIMD, 0x0b, 0x00, 0x00],
  const: [SIMD, 0x0c],
  and: [SIMD, 0x4e],
  xor: [SIMD, 0x51],
  i8x16shrS: [SIMD, 0x6c],
  i8x16add: [SIMD, 0x6e],
};
const I32 = 0x7f;
const V128 = 0x7b;
const VOID = 0x40;

function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
  return out;
}

function section(id: number, body: number[]): number[] {
  return [id, ...uleb(body.length), ...body];
}

function vec(items: number[][]): number[] {
  return [...uleb(items.length), ...items.flat()];
}

function name(s: string): number[] {
  return [...uleb(s.length), ...Buffer.from(s, 'ascii')];
}

const get = (i: number): number[] => [op.get, i];
const set = (i: number): number[] => [op.set, i];
const i32 = (v: number): number[] => [op.i32const, v]; // small non-negative constants only (< 64)

function xorBody(): number[] {
  // params 0 dst, 1 src, 2 len; local 3 i
  const locals = vec([[1, I32]]);
  const code = [
    op.block, VOID, op.loop, VOID,
    ...get(3), ...get(2), op.i32geU, op.brIf, 1,
    ...get(0), ...get(3), op.i32add,
    ...get(0), ...get(3), op.i32add, ...v128.load,
    ...get(1), ...get(3), op.i32add, ...v128.load,
    ...v128.xor, ...v128.store,
    ...get(3), ...i32(16), op.i32add, ...set(3),
    op.br, 0, op.end, op.end, op.end,
  ];
  return [...locals, ...code];
}

function pqBody(): number[] {
  // params 0 data, 1 n, 2 len, 3 p, 4 q; locals 5 off, 6 k (i32), 7 pv, 8 qv, 9 x (v128)
  const locals = vec([[2, I32], [3, V128]]);
  const poly = [...v128.const, ...new Array<number>(16).fill(0x1d)];
  const code = [
    op.block, VOID, op.loop, VOID,
    ...get(5), ...get(2), op.i32geU, op.brIf, 1,
    // pv = qv = load(data + (n-1)*len + off)
    ...get(0), ...get(1), ...i32(1), op.i32sub, ...get(2), op.i32mul, op.i32add, ...get(5), op.i32add,
    ...v128.load, op.tee, 7, ...set(8),
    ...get(1), ...i32(2), op.i32sub, ...set(6),
    op.block, VOID, op.loop, VOID,
    ...get(6), ...i32(0), op.i32ltS, op.brIf, 1,
    ...get(0), ...get(6), ...get(2), op.i32mul, op.i32add, ...get(5), op.i32add, ...v128.load, ...set(9),
    ...get(7), ...get(9), ...v128.xor, ...set(7),
    ...get(8), ...get(8), ...v128.i8x16add,
    ...get(8), ...i32(7), ...v128.i8x16shrS, ...poly, ...v128.and,
    ...v128.xor, ...get(9), ...v128.xor, ...set(8),
    ...get(6), ...i32(1), op.i32sub, ...set(6),
    op.br, 0, op.end, op.end,
    ...get(3), ...get(5), op.i32add, ...get(7), ...v128.store,
    ...get(4), ...get(5), op.i32add, ...get(8), ...v128.store,
    ...get(5), ...i32(16), op.i32add, ...set(5),
    op.br, 0, op.end, op.end, op.end,
  ];
  return [...locals, ...code];
}

function moduleBytes(): Uint8Array {
  const types = vec([
    [0x60, ...vec([[I32], [I32], [I32]]), 0],
    [0x60, ...vec([[I32], [I32], [I32], [I32], [I32]]), 0],
  ]);
  const bodies = [xorBody(), pqBody()].map((b) => [...uleb(b.length), ...b]);
  return Uint8Array.from([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, types),
    ...section(3, vec([[0], [1]])),
    ...section(5, vec([[0x00, 1]])),
    ...section(7, vec([[...name('memory'), 0x02, 0], [...name('xor'), 0x00, 0], [...name('pq'), 0x00, 1]])),
    ...section(10, vec(bodies)),
  ]);
}

interface Kernels {
  memory: WebAssembly.Memory;
  xor(dst: number, src: number, len: number): void;
  pq(data: number, n: number, len: number, p: number, q: number): void;
}

function instantiate(): Kernels | undefined {
  const bytes = moduleBytes();
  if (!WebAssembly.validate(bytes)) return undefined;
  const instance = new WebAssembly.Instance(new WebAssembly.Module(bytes));
  return instance.exports as unknown as Kernels;
}

// undefined when the runtime lacks WebAssembly SIMD: callers then use the JavaScript loops.
const kernels = instantiate();

export const simdAvailable = kernels !== undefined;

/** Blocks the SIMD kernels take: a multiple of 16 bytes. */
export function simdFits(length: number): boolean {
  return simdAvailable && length > 0 && length % 16 === 0;
}

function heap(bytes: number): Uint8Array {
  const k = kernels!;
  const have = k.memory.buffer.byteLength;
  if (have < bytes) k.memory.grow(Math.ceil((bytes - have) / 65536));
  return new Uint8Array(k.memory.buffer);
}

/**
 * Blocks go through WebAssembly memory in tiles of this many bytes each: the tiles of one pass
 * (every data block, P and Q) stay in the CPU cache, so memory sees each input read once and each
 * output written once. Whole blocks at a time would pass through memory three times over.
 */
const TILE = 32 * 1024;

/**
 * Writes P (and Q when `q` is given) of `data` (syndrome-slot order) into `p` and `q`.
 * Every block has the same length, a multiple of 16 (simdFits).
 */
export function simdSyndromes(data: readonly Uint8Array[], p: Uint8Array, q?: Uint8Array): void {
  const k = kernels!;
  const len = p.length;
  const n = data.length;
  const mem = heap((n + 2) * Math.min(TILE, len));
  for (let off = 0; off < len; off += TILE) {
    // Blocks of a tile sit at a stride of its length t, as the kernels address them.
    const t = Math.min(TILE, len - off);
    for (let i = 0; i < n; i++) mem.set(data[i]!.subarray(off, off + t), i * t);
    const pAt = n * t;
    const qAt = (n + 1) * t;
    if (q !== undefined) {
      k.pq(0, n, t, pAt, qAt);
      q.set(mem.subarray(qAt, qAt + t), off);
    } else {
      mem.copyWithin(pAt, (n - 1) * t, n * t);
      for (let i = 0; i < n - 1; i++) k.xor(pAt, i * t, t);
    }
    p.set(mem.subarray(pAt, pAt + t), off);
  }
}

/** out ^= src, both the same length, a multiple of 16 (simdFits). */
export function simdXor(out: Uint8Array, src: Uint8Array): void {
  const k = kernels!;
  const len = out.length;
  const mem = heap(2 * Math.min(TILE, len));
  for (let off = 0; off < len; off += TILE) {
    const t = Math.min(TILE, len - off);
    mem.set(out.subarray(off, off + t), 0);
    mem.set(src.subarray(off, off + t), t);
    k.xor(0, t, t);
    out.set(mem.subarray(0, t), off);
  }
}
