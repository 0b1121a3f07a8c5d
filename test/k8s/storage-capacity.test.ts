// Kubernetes quantities as CSIStorageCapacity objects carry them, in bytes.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { quantityBytes } from '../../src/k8s/storage-capacity.js';

test('quantities in bytes: binary and decimal suffixes, exponents, plain numbers; anything else is none', () => {
  assert.equal(quantityBytes('10Gi'), 10 * 2 ** 30);
  assert.equal(quantityBytes('1500M'), 1.5e9);
  assert.equal(quantityBytes('12345'), 12345);
  assert.equal(quantityBytes('102400Ki'), 100 * 2 ** 20);
  assert.equal(quantityBytes('1e9'), 1e9);
  assert.equal(quantityBytes('1.5Gi'), 1.5 * 2 ** 30);
  assert.equal(quantityBytes(undefined), undefined);
  assert.equal(quantityBytes('ten'), undefined);
  assert.equal(quantityBytes('-1Gi'), undefined);
});
