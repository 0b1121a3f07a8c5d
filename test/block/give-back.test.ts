// giveBack (block/give-back.ts): megabytes of Buffers a process let go of are given back to the
// kernel at once, round after round, with node's --expose-gc and without it. Each round allocates
// 32 MiB of 1 MiB buffers (and keeps 64 KiB ones allocated between them, as a server's other
// allocations would), drops them and calls giveBack. Without the collection the buffers stay
// allocated (Node's arrayBuffers); without fixing glibc's mmap threshold the first round's frees
// raise it and the next rounds' buffers stay resident in glibc's heap (RssAnon). A process whose
// environment fixed the threshold (GLIBC_TUNABLES, as every engine's does) gets the same without
// loading koffi to call mallopt.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { tempDir } from '../support/temp-dir.js';

const run = promisify(execFile);
const ROOT = new URL('../..', import.meta.url).pathname;
const MiB = 1024 * 1024;
/** What a round may leave over the start and the small buffers kept: allocator slack. */
const MAX_ANON_LEFT = 6 * MiB;

interface Round {
  ran: boolean;
  busy: number;
  rest: number;
  arrayBuffers: number;
}

/**
 * The child: RssAnon and arrayBuffers are reported over its start, less the 64 KiB buffers it
 * keeps (allocated between the large ones, from glibc's heap: below its mmap threshold).
 */
const CHILD = (giveBackPath: string): string => `
import { readFileSync } from 'node:fs';
const { giveBack } = await import(${JSON.stringify(giveBackPath)});
const MiB = 1024 * 1024;
const anon = () => Number(/^RssAnon:\\s+(\\d+) kB$/m.exec(readFileSync('/proc/self/status', 'utf8'))[1]) * 1024;
// V8 frees the ArrayBuffers a collection found dead on a worker thread, just after it.
const settle = () => new Promise((r) => setTimeout(r, 300));
const small = [];
const kept = () => small.length * 64 * 1024;
await settle();
const base = { anon: anon(), arrayBuffers: process.memoryUsage().arrayBuffers };
const out = { below: await giveBack(MiB), rounds: [] };
for (let round = 0; round < 3; round++) {
  let big = [];
  for (let i = 0; i < 32; i++) {
    big.push(Buffer.allocUnsafeSlow(MiB).fill(i));
    small.push(Buffer.allocUnsafeSlow(64 * 1024).fill(i));
  }
  const busy = anon();
  big = undefined;
  const ran = await giveBack(32 * MiB);
  await settle();
  const over = (now, at) => now - at - kept();
  out.rounds.push({ ran, busy: over(busy, base.anon), rest: over(anon(), base.anon), arrayBuffers: over(process.memoryUsage().arrayBuffers, base.arrayBuffers) });
}
out.koffi = readFileSync('/proc/self/maps', 'utf8').includes('koffi');
process.stdout.write(JSON.stringify(out));
`;

const TUNABLES = 'glibc.malloc.mmap_threshold=131072';

for (const [flags, tunables] of [[['--expose-gc'], undefined], [[], undefined], [['--expose-gc'], TUNABLES]] as const) {
  const name = `${flags.join(' ') || 'without --expose-gc'}${tunables === undefined ? '' : `, GLIBC_TUNABLES=${tunables}`}`;
  test(`32 MiB of dropped buffers are given back, three rounds in a row (node ${name})`, async (t) => {
    const dir = tempDir(t, 'give-back');
    const script = join(dir, 'child.mts');
    writeFileSync(script, CHILD(join(ROOT, 'src/block/give-back.ts')));
    const env = { ...process.env, GLIBC_TUNABLES: tunables };
    const { stdout, stderr } = await run(process.execPath, [...flags, '--import', 'tsx', script], { cwd: ROOT, timeout: 60_000, env });
    const out = JSON.parse(stdout) as { below: boolean; rounds: Round[]; koffi: boolean };
    assert.equal(out.koffi, tunables === undefined, tunables === undefined ? 'mallopt through koffi' : 'no koffi: the environment fixed the threshold');
    const mib = (n: number): string => (n / MiB).toFixed(1);
    for (const [i, r] of out.rounds.entries()) {
      console.log(`round ${i + 1}: RssAnon +${mib(r.busy)} MiB with the buffers, +${mib(r.rest)} after giveBack; arrayBuffers +${mib(r.arrayBuffers)}`);
    }
    assert.equal(out.below, false, 'less than GIVE_BACK_MIN_BYTES runs no collection');
    for (const [i, r] of out.rounds.entries()) {
      assert.equal(r.ran, true, `round ${i + 1}: a collection ran; stderr: ${stderr}`);
      assert.ok(r.busy > 24 * MiB, `round ${i + 1}: the buffers were resident (+${mib(r.busy)} MiB)`);
      assert.ok(r.arrayBuffers < MiB, `round ${i + 1}: V8 freed the buffers (arrayBuffers +${mib(r.arrayBuffers)} MiB)`);
      assert.ok(r.rest < MAX_ANON_LEFT, `round ${i + 1}: the memory went back to the kernel (RssAnon +${mib(r.rest)} MiB left, expected under +${mib(MAX_ANON_LEFT)})`);
    }
    assert.doesNotMatch(stderr, /LLRAID_NO_(GC|MALLOPT)/, 'no warning');
  });
}
