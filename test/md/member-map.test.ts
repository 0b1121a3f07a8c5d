// From member bytes back to array bytes (md/member-map.ts), on every level: after random writes
// to a real array, the member blocks that changed (found by comparing each member file with a copy
// taken before) map back to array ranges that cover every changed array block and stay inside
// the blocks written; with a member missing, a reconstructed parity row is reported whole.

import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { createArray } from '../../src/md/index.js';
import { arrayRangesOf } from '../../src/md/member-map.js';
import type { ByteRange } from '../../src/block/file-extents.js';
import { DATA_OFFSET, memberFiles, pattern, tempDir } from './array-fixtures.js';
import { propertySeed, runProperty } from '../support/property-run.js';

const FILE = 'test/md/member-map.test.ts';
const SEED = propertySeed(FILE);
const KiB = 1024;
const MiB = 1024 * KiB;
const BLOCK = 4 * KiB;
const LEVELS = [
  { level: 0 as const, members: 3 },
  { level: 1 as const, members: 2 },
  { level: 10 as const, members: 4 },
  { level: 5 as const, members: 4 },
  { level: 6 as const, members: 5 },
];

const covered = (ranges: readonly ByteRange[], at: number): boolean => ranges.some((r) => at >= r.offset && at < r.offset + r.length);

/** The 4 KiB blocks of two member files' data areas that differ, as ranges of the data area. */
function changedBlocks(before: Buffer, after: Buffer): ByteRange[] {
  const out: ByteRange[] = [];
  for (let at = DATA_OFFSET; at < after.length; at += BLOCK) {
    if (before.subarray(at, at + BLOCK).equals(after.subarray(at, at + BLOCK))) continue;
    const offset = at - DATA_OFFSET;
    const prev = out[out.length - 1];
    if (prev && prev.offset + prev.length === offset) prev.length += BLOCK;
    else out.push({ offset, length: BLOCK });
  }
  return out;
}

for (const { level, members } of LEVELS) {
  test(`raid${level}: the member blocks that changed map back to exactly the array blocks written`, async (t: TestContext) => {
    const dir = tempDir(t, `member-map-${level}`);
    let round = 0;
    await runProperty({
      name: `raid${level}: the member blocks that changed`,
      file: FILE,
      seed: SEED,
      stream: level,
      numRuns: 6,
      property: fc.asyncProperty(fc.array(fc.record({ block: fc.nat(1_000_000), blocks: fc.integer({ min: 1, max: 20 }) }), { minLength: 1, maxLength: 12 }), async (writes) => {
        round++;
        const paths = memberFiles(dir, members, 8 * MiB, `r${round}-`);
        const array = await createArray({ name: `map${level}`, level, members: paths, chunkSize: 64 * KiB, assumeClean: true });
        const blocks = array.size / BLOCK;
        const written = new Set<number>();
        let before: Buffer[];
        try {
          await array.flush();
          before = paths.map((p) => readFileSync(p));
          for (const w of writes) {
            const first = w.block % blocks;
            const n = Math.min(w.blocks, blocks - first);
            await array.write(first * BLOCK, pattern(round * 1000 + first, n * BLOCK));
            for (let b = first; b < first + n; b++) written.add(b);
          }
          await array.flush();
        } finally {
          await array.stop();
        }
        const after = paths.map((p) => readFileSync(p));
        const changed = new Map(paths.map((_, role) => [role, changedBlocks(before[role]!, after[role]!)]));
        const geometry = { level, raidDisks: members, layout: array.personality.layout, chunkSize: array.personality.chunkSize, memberSize: array.memberSet.memberSize };
        const ranges = await arrayRangesOf(geometry, paths.map(() => true), changed);
        for (let b = 0; b < blocks; b++) {
          if (written.has(b)) assert.ok(covered(ranges, b * BLOCK), `array block ${b} was written and is not reported`);
          else assert.ok(!covered(ranges, b * BLOCK), `array block ${b} is reported and was never written`);
        }
      }),
    });
  });
}

test('raid5 with a member missing: a reconstructed row is reported whole when any member changed in it', async () => {
  const geometry = { level: 5, raidDisks: 4, layout: 2, chunkSize: 64 * KiB, memberSize: 1 * MiB };
  const changed = new Map([[2, [{ offset: 4 * KiB, length: BLOCK }]]]);
  const whole = await arrayRangesOf(geometry, [true, true, true, true], changed);
  const degraded = await arrayRangesOf(geometry, [false, true, true, true], changed);
  assert.equal(whole.reduce((n, r) => n + r.length, 0), BLOCK, `one block when every member serves its own: ${JSON.stringify(whole)}`);
  assert.ok(degraded.reduce((n, r) => n + r.length, 0) >= BLOCK, 'never less when rows are reconstructed');
  for (const r of whole) assert.ok(covered(degraded, r.offset), 'the changed block is still reported');
});
