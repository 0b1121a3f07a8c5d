// The levels' arithmetic: array bytes for member bytes (exactly what each personality computes),
// member bytes for a wanted capacity (always enough, never a unit more), and member minimums.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { arrayBytes, CREATABLE_LEVELS, createPersonality, memberDataFor, minMembers, usedMemberBytes, type CreatableLevel } from '../../src/md/levels.js';
import { raid10NearLayout } from '../../src/md/raid10.js';

const MiB = 1024 * 1024;

test('array bytes per level for four members of 100 MiB', () => {
  const d = 100 * MiB;
  assert.equal(arrayBytes(0, 4, 65536, d), 400 * MiB);
  assert.equal(arrayBytes(1, 4, 65536, d), 100 * MiB);
  assert.equal(arrayBytes(10, 4, 65536, d), 200 * MiB);
  assert.equal(arrayBytes(5, 4, 65536, d), 300 * MiB);
  assert.equal(arrayBytes(6, 4, 65536, d), 200 * MiB);
});

test('raid10 with an odd member count keeps two copies of every chunk', () => {
  assert.equal(arrayBytes(10, 3, MiB, 10 * MiB), 15 * MiB);
});

test('array bytes are what the personality of that geometry reports', () => {
  fc.assert(
    fc.property(
      fc.constantFrom(...CREATABLE_LEVELS),
      fc.integer({ min: 0, max: 5 }),
      fc.constantFrom(4096, 65536, 524288),
      fc.integer({ min: 1, max: 4096 }),
      (level, extra, chunk, units) => {
        const members = minMembers(level) + extra;
        const memberData = units * 4096 + 512 * (units % 7);
        const chunkSize = level === 1 ? 0 : chunk;
        const g = { level, raidDisks: members, layout: level === 10 ? raid10NearLayout(2) : level >= 5 ? 2 : 0, chunkSize, memberSize: usedMemberBytes({ level, raidDisks: members, layout: 0, chunkSize, memberSize: memberData }) };
        if (g.memberSize < Math.max(chunkSize, 4096)) return;
        assert.equal(arrayBytes(level, members, chunkSize, memberData), createPersonality(g).arraySize);
      },
    ),
    { numRuns: 300 },
  );
});

test('member data for a capacity is whole units of the level that hold at least that capacity, and not a unit more', () => {
  fc.assert(
    fc.property(
      fc.constantFrom(...CREATABLE_LEVELS),
      fc.integer({ min: 0, max: 6 }),
      fc.constantFrom(4096, 65536, 524288),
      fc.integer({ min: 1, max: 2 ** 40 }),
      (level: CreatableLevel, extra, chunk, capacity) => {
        const members = minMembers(level) + extra;
        const unit = level === 1 ? 4096 : chunk;
        const d = memberDataFor(level, members, chunk, capacity);
        assert.equal(d % unit, 0);
        assert.ok(arrayBytes(level, members, chunk, d) >= capacity);
        if (d > unit) assert.ok(arrayBytes(level, members, chunk, d - unit) < capacity);
      },
    ),
  );
});

test('the fewest members per level', () => {
  assert.deepEqual(CREATABLE_LEVELS.map((l) => minMembers(l)), [2, 2, 2, 3, 4]);
  assert.equal(minMembers(10, 3), 3);
});
