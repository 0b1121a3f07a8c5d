// Changed-block tracking from reflink clones (md/snapshot-ranges.ts), on XFS with reflink: an array
// running on member files there, snapshotted twice (every member cloned after a flush) around
// random writes. The delta between the two snapshots is exactly the array blocks written between
// them, whatever the level; the allocated ranges of a snapshot are exactly the blocks ever written.

import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { constants, copyFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { createArray } from '../../src/md/index.js';
import { allocatedRanges, bytesOutside, changedRanges, type SnapshotMembers } from '../../src/md/snapshot-ranges.js';
import type { ByteRange } from '../../src/block/file-extents.js';
import { DATA_OFFSET, memberFiles, pattern } from './array-fixtures.js';
import { mountReflinkFs } from '../support/reflink-fs.js';
import { propertySeed, runProperty } from '../support/property-run.js';

const FILE = 'test/md/snapshot-ranges.test.ts';
const SEED = propertySeed(FILE);
const KiB = 1024;
const MiB = 1024 * KiB;
const BLOCK = 4 * KiB;

const covered = (ranges: readonly ByteRange[], at: number): boolean => ranges.some((r) => at >= r.offset && at < r.offset + r.length);
const writesArb = fc.array(fc.record({ block: fc.nat(1_000_000), blocks: fc.integer({ min: 1, max: 24 }) }), { minLength: 1, maxLength: 10 });

for (const { level, members } of [{ level: 1 as const, members: 2 }, { level: 5 as const, members: 4 }, { level: 10 as const, members: 4 }]) {
  test(`raid${level}: the delta of two snapshots is the blocks written between them, the allocated ranges those ever written`, async (t: TestContext) => {
    const fs = await mountReflinkFs(`snap-ranges-${level}`);
    t.after(() => fs.close());
    let round = 0;
    await runProperty({
      name: `raid${level}: the delta of two snapshots`,
      file: FILE,
      seed: SEED,
      stream: level,
      numRuns: 4,
      property: fc.asyncProperty(writesArb, writesArb, async (first, second) => {
        round++;
        const paths = memberFiles(fs.dir, members, 8 * MiB, `r${round}-`);
        const array = await createArray({ name: `snap${level}`, level, members: paths, chunkSize: 64 * KiB, assumeClean: true });
        const blocks = array.size / BLOCK;
        const geometry = { level, raidDisks: members, layout: array.personality.layout, chunkSize: array.personality.chunkSize, memberSize: array.memberSet.memberSize };
        const snapshot = async (name: string): Promise<SnapshotMembers> => {
          await array.flush();
          const clones = paths.map((p, i) => join(fs.dir, `r${round}-${name}-${i}`));
          paths.forEach((p, i) => copyFileSync(p, clones[i]!, constants.COPYFILE_FICLONE_FORCE));
          return { geometry, dataOffset: DATA_OFFSET, paths: clones };
        };
        const apply = async (writes: typeof first, into: Set<number>): Promise<void> => {
          for (const w of writes) {
            const at = w.block % blocks;
            const n = Math.min(w.blocks, blocks - at);
            await array.write(at * BLOCK, pattern(round * 7919 + at, n * BLOCK));
            for (let b = at; b < at + n; b++) into.add(b);
          }
        };
        const before = new Set<number>();
        const between = new Set<number>();
        let base: SnapshotMembers;
        let target: SnapshotMembers;
        try {
          await apply(first, before);
          base = await snapshot('a');
          await apply(second, between);
          target = await snapshot('b');
        } finally {
          await array.stop();
        }
        const delta = await changedRanges(base, target);
        const allocated = await allocatedRanges(base);
        for (let b = 0; b < blocks; b++) {
          assert.equal(covered(delta, b * BLOCK), between.has(b), `block ${b}: in the delta ${covered(delta, b * BLOCK)}, written between ${between.has(b)}`);
          assert.equal(covered(allocated, b * BLOCK), before.has(b), `block ${b}: allocated ${covered(allocated, b * BLOCK)}, written before ${before.has(b)}`);
        }
      }),
    });
  });
}

test('bytesOutside: what of one range list the other does not cover', () => {
  const r = (offset: number, length: number): ByteRange => ({ offset, length });
  assert.equal(bytesOutside([r(0, 100)], []), 100);
  assert.equal(bytesOutside([r(0, 100)], [r(10, 10), r(50, 100)]), 10 + 30);
  assert.equal(bytesOutside([r(0, 10), r(20, 10), r(40, 10)], [r(5, 20)]), 5 + 5 + 10);
  assert.equal(bytesOutside([r(0, 10)], [r(0, 10)]), 0);
});
