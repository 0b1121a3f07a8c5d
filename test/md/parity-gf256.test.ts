// GF(2^8) arithmetic against a carry-less multiply reduced by 0x11d, computed independently here.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { gfDiv, gfExp2, gfInv, gfMul, gfMulTable } from '../../src/md/parity/gf256.js';

function slowMul(a: number, b: number): number {
  let r = 0;
  for (let i = 0; i < 8; i++) if (b & (1 << i)) r ^= a << i;
  for (let bit = 14; bit >= 8; bit--) if (r & (1 << bit)) r ^= 0x11d << (bit - 8);
  return r;
}

test('gfMul equals carry-less multiplication modulo 0x11d for every pair', () => {
  for (let a = 0; a < 256; a++) for (let b = 0; b < 256; b++) assert.equal(gfMul(a, b), slowMul(a, b), `${a}*${b}`);
});

test('every non-zero element has an inverse and division undoes multiplication', () => {
  for (let a = 1; a < 256; a++) {
    assert.equal(gfMul(a, gfInv(a)), 1);
    for (const b of [1, 2, 29, 200, 255]) assert.equal(gfDiv(gfMul(a, b), b), a);
  }
  assert.throws(() => gfInv(0), RangeError);
});

test('2 generates the field: its powers cycle through all 255 non-zero elements', () => {
  const seen = new Set<number>();
  let v = 1;
  for (let i = 0; i < 255; i++) {
    assert.equal(gfExp2(i), v);
    seen.add(v);
    v = slowMul(v, 2);
  }
  assert.equal(seen.size, 255);
  assert.equal(gfExp2(255), 1);
  assert.equal(gfMul(gfExp2(-3), gfExp2(3)), 1);
});

test('multiplication tables agree with gfMul', () => {
  const t = gfMulTable(0x8e);
  for (let x = 0; x < 256; x++) assert.equal(t[x], slowMul(0x8e, x));
});
