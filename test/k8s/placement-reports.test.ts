// Kubernetes quantities as CSIStorageCapacity objects carry them, in bytes; the nodes a StorageClass's
// allowedTopologies allow.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { allowedNodesOf, quantityBytes } from '../../src/k8s/placement-reports.js';

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

test('allowedTopologies: the nodes the terms name by the key; a term without the key, or none, allows every node', () => {
  const key = 'topology.llraid.io/node';
  assert.equal(allowedNodesOf(undefined, key), undefined);
  assert.equal(allowedNodesOf([], key), undefined);
  assert.deepEqual(allowedNodesOf([{ matchLabelExpressions: [{ key, values: ['b', 'a'] }] }, { matchLabelExpressions: [{ key, values: ['c'] }] }], key), ['a', 'b', 'c']);
  assert.deepEqual(allowedNodesOf([{ matchLabelExpressions: [{ key, values: ['a', 'b'] }, { key, values: ['b', 'c'] }] }], key), ['b']);
  assert.equal(allowedNodesOf([{ matchLabelExpressions: [{ key: 'topology.kubernetes.io/zone', values: ['z1'] }] }], key), undefined);
});
