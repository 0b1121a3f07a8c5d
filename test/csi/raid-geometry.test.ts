// Capacity arithmetic: member sizes always give at least the requested capacity, and usable
// capacity subtracts each level's redundancy.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { memberDataFor, usableBytes } from '../../src/csi/raid-geometry.js';
import type { RaidLevel } from '../../src/csi/parameters.js';

const MiB = 1024 * 1024;

test('usable capacity per level for four members of 100 MiB', () => {
  const d = 100 * MiB;
  assert.equal(usableBytes(0, 4, 65536, d), 400 * MiB);
  assert.equal(usableBytes(1, 4, 65536, d), 100 * MiB);
  assert.equal(usableBytes(10, 4, 65536, d), 200 * MiB);
  assert.equal(usableBytes(5, 4, 65536, d), 300 * MiB);
  assert.equal(usableBytes(6, 4, 65536, d), 200 * MiB);
});

test('raid10 with an odd member count keeps two copies of every chunk', () => {
  assert.equal(usableBytes(10, 3, MiB, 10 * MiB), 15 * MiB);
});

test('member data for a capacity is a chunk multiple that holds at least that capacity, and not a chunk more', () => {
  const levels: Array<[RaidLevel, number]> = [[0, 1], [1, 2], [10, 2], [5, 3], [6, 4]];
  fc.assert(
    fc.property(
      fc.constantFrom(...levels),
      fc.integer({ min: 0, max: 6 }),
      fc.constantFrom(4096, 65536, 524288),
      fc.integer({ min: 1, max: 2 ** 40 }),
      ([level, min], extra, chunk, capacity) => {
        const members = min + extra;
        const d = memberDataFor(level, members, chunk, capacity);
        assert.equal(d % chunk, 0);
        assert.ok(usableBytes(level, members, chunk, d) >= capacity);
        if (d > chunk) assert.ok(usableBytes(level, members, chunk, d - chunk) < capacity);
      },
    ),
  );
});
