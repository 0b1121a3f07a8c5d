// raid0's synchronous read (MdArray.readNow, what `llraid serve` answers small reads with), over
// member files in the page cache: a read inside one chunk is one read of the member md's layout
// puts the chunk on, done now; one across a chunk boundary is declined, and read() does it. Large
// reads (NBD's reused buffers) land by readInto, each chunk's part straight into its place.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setImmediate as turn } from 'node:timers/promises';
import { createArray, type MdArray } from '../../src/md/index.js';
import { memberFiles, pattern, pokeMember, tempDir } from './array-fixtures.js';

const K = 64 * 1024;
const KiB4 = 4096;
const MiB = 1024 * 1024;
const SPAN = MiB;

/**
 * readNow, asked again a few turns later while it declines: a file device reads now only what
 * the page cache answers at once (RWF_NOWAIT), which a loaded machine's tmpfs can refuse for a
 * moment. A read the array must decline (across chunks) declines every time.
 */
async function readNowSoon(array: MdArray, offset: number, out: Buffer): Promise<boolean> {
  for (let attempt = 0; attempt < 5; attempt++) {
    if (array.readNow(offset, out)) return true;
    await turn();
  }
  return false;
}

for (const members of [2, 3]) {
  test(`raid0 over ${members} members: a read inside a chunk goes now to the member holding it, one across a boundary takes read()`, async (t) => {
    // tmpfs: files whose every request the page cache answers, so their devices take it now.
    const paths = memberFiles(tempDir(t, 'r0-fast', '/dev/shm'), members, 16 * MiB);
    const array = await createArray({ name: 'r0fast', level: 0, members: paths, chunkSize: K });
    t.after(() => array.stop());
    const oracle = pattern(1, SPAN);
    await array.write(0, oracle);
    for (let c = 0; c < SPAN / K; c++) {
      const start = c * K;
      const end = start + K;
      const out = Buffer.alloc(KiB4, 0xee);
      assert.equal(await readNowSoon(array, end - KiB4, out), true, `chunk ${c}: its last 4 KiB read now`);
      assert.ok(out.equals(oracle.subarray(end - KiB4, end)), `chunk ${c}: tail bytes`);
      const whole = Buffer.alloc(K, 0xee);
      assert.equal(await readNowSoon(array, start, whole), true, `chunk ${c}: the whole chunk read now`);
      assert.ok(whole.equals(oracle.subarray(start, end)), `chunk ${c}: chunk bytes`);
      if (end < SPAN) {
        const across = Buffer.alloc(KiB4, 0xee);
        assert.equal(array.readNow(end - KiB4 / 2, across), false, `chunk ${c}: a read across the boundary is declined`);
        assert.ok(across.equals(Buffer.alloc(KiB4, 0xee)), `chunk ${c}: the declined read wrote nothing`);
        assert.ok((await array.read(end - KiB4 / 2, KiB4)).equals(oracle.subarray(end - KiB4 / 2, end + KiB4 / 2)), `chunk ${c}: across bytes`);
      }
    }
    // The read now comes from where md's layout puts the chunk: chunk c on role c % n, at member
    // chunk c / n. Changed there behind the array's back, that is what it returns.
    for (const c of [0, 1, members, 2 * members + 1]) {
      const poke = pattern(100 + c, KiB4);
      pokeMember(paths[c % members]!, Math.floor(c / members) * K + KiB4, poke);
      poke.copy(oracle, c * K + KiB4);
      const out = Buffer.alloc(KiB4);
      assert.equal(await readNowSoon(array, c * K + KiB4, out), true);
      assert.ok(out.equals(poke), `chunk ${c}: read from role ${c % members}`);
    }
    // Reads across many chunks, by read() and into a buffer.
    assert.ok((await array.read(0, SPAN)).equals(oracle));
    for (const [off, len] of [[0, SPAN], [K / 2 + 512, 3 * K], [K, K], [3 * K - KiB4, 2 * KiB4]] as const) {
      const into = Buffer.alloc(len, 0xee);
      await array.readInto(off, into);
      assert.ok(into.equals(oracle.subarray(off, off + len)), `readInto [${off}, +${len})`);
    }
    assert.equal(array.readNow(KiB4, Buffer.alloc(0)), true, 'an empty read is done now');
    assert.equal(array.status().state, 'active');
  });
}
