// `llraid demo` end to end on small files: both runs happen (bitmap-guided and full resync of
// the same array after the same workload and cut), the durable writes verify, and the ratio
// table is printed from measured figures.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { buildCli } from '../support/cli.js';

const exec = promisify(execFile);

test('the demo runs the database workload twice, cuts the power, and prints the measured resync ratio', { timeout: 120_000 }, async () => {
  const { stdout } = await exec(process.execPath, [await buildCli(), 'demo', '--size', '64M', '--seconds', '1', '--page-writes', '200'], { timeout: 110_000 });
  assert.match(stdout, /1\. created raid1 "demo" .*llbitmap: \d+ chunks of/);
  assert.match(stdout, /the bitmap marks \d+ of \d+ chunks/);
  assert.match(stdout, /without a bitmap every chunk is suspect/);
  assert.equal((stdout.match(/verified: \d+ durable page writes read back; the two mirrors are identical/g) ?? []).length, 2, stdout);
  const full = /full resync +([\d.]+ \S+) +([\d.]+) s/.exec(stdout);
  const guided = /bitmap-guided resync +([\d.]+ \S+) +([\d.]+) s/.exec(stdout);
  assert.ok(full && guided, stdout);
  assert.match(stdout, /ratio +[\d.]+x +[\d.]+x +\(bytes, time\)/);
});
