// LLRAID_TRACE end to end: the built `llraid` on real member files says what md decided (a
// member failed, how a re-add recovers) only when asked to, and nothing otherwise.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { truncateSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildCli, runCli, type CliResult } from '../support/cli.js';

/** The built CLI with `env` over the test's environment, less its own tracing: only what the test sets counts. */
function llraid(env: Record<string, string>, ...args: string[]): Promise<CliResult> {
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== 'LLRAID_TRACE' && k !== 'LLRAID_VERBOSITY'));
  return runCli(args, { env: { ...base, ...env } });
}

const escape = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
/** The md trace lines of a stderr, without their time stamp and pid. */
const mdLines = (stderr: string): string[] =>
  stderr.split('\n').filter((l) => / llraid\[\d+\] md: /.test(l)).map((l) => l.replace(/^\S+ (\w+) llraid\[\d+\] md: /, '$1 '));

describe('LLRAID_TRACE', () => {
  let dir: string;
  before(async () => {
    await buildCli();
    dir = await mkdtemp(join(tmpdir(), 'llraid-trace-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('LLRAID_TRACE=md prints md trace lines for a fail and a re-add; without it stderr stays empty', async () => {
    const [a, b] = [join(dir, 'ta.img'), join(dir, 'tb.img')];
    const created = await llraid({}, 'create', '-l', '1', '-N', 'traced', '-z', '16M', a, b);
    assert.equal(created.code, 0, created.stderr);
    assert.equal(created.stderr, '', 'no trace without LLRAID_TRACE');

    const failed = await llraid({ LLRAID_TRACE: 'md' }, 'fail', b, a, b);
    assert.equal(failed.code, 0, failed.stderr);
    const failLines = mdLines(failed.stderr);
    assert.ok(failLines.includes(`INFO array traced: member ${b} failed: failed by request`), failed.stderr);
    assert.ok(failLines.some((l) => /^DEBUG bitmap cross-check of .*: the copies agree$/.test(l)), failed.stderr);
    assert.equal(failed.stderr.split('\n').filter((l) => l !== '').length, failLines.length, 'stderr holds trace lines only');

    const readded = await llraid({ LLRAID_TRACE: 'md' }, 're-add', b, a);
    assert.equal(readded.code, 0, readded.stderr);
    assert.match(readded.stdout, /bitmap-guided recovery/);
    const readdLines = mdLines(readded.stderr);
    assert.ok(readdLines.includes(`INFO array traced: re-add ${b}: bitmap-guided recovery`), readded.stderr);
    assert.ok(readdLines.some((l) => /^INFO array traced: recovery \(bitmap-guided\): pass starts at 0 of \d+ bytes/.test(l)), readded.stderr);
    assert.ok(readdLines.some((l) => /^INFO array traced: recovery \(bitmap-guided\): pass complete at \d+: /.test(l)), readded.stderr);

    // The same commands untraced: the operator sees nothing more than before.
    const again = await llraid({}, 'fail', b, a, b);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(again.stderr, '');
    const back = await llraid({}, 're-add', b, a);
    assert.equal(back.code, 0, back.stderr);
    assert.equal(back.stderr, '');
  });

  it('a full re-add says why the bitmap could not guide it; LLRAID_VERBOSITY=error hides the info lines', async () => {
    const [a, b, c] = [join(dir, 'fa.img'), join(dir, 'fb.img'), join(dir, 'fc.img')];
    assert.equal((await llraid({}, 'create', '-l', '1', '-N', 'full', '-z', '16M', a, b)).code, 0);
    assert.equal((await llraid({}, 'fail', b, a, b)).code, 0);
    writeFileSync(c, '');
    truncateSync(c, 16 * 1024 * 1024);
    // c takes b's role: the bitmap no longer tracks what b misses.
    assert.equal((await llraid({}, 'add', c, a)).code, 0);
    const quiet = await llraid({ LLRAID_TRACE: 'md', LLRAID_VERBOSITY: 'error' }, 'fail', c, a, c);
    assert.equal(quiet.code, 0, quiet.stderr);
    assert.equal(quiet.stderr, '', 'info lines are below error');
    const readded = await llraid({ LLRAID_TRACE: 'all' }, 're-add', b, a);
    assert.equal(readded.code, 0, readded.stderr);
    assert.match(readded.stderr, new RegExp(` md: array full: re-add ${escape(b)}: full recovery, its role was filled by another member since it left\n`));
  });

  it('a layer name it does not know is a usage error', async () => {
    const r = await llraid({ LLRAID_TRACE: 'md,raid' }, 'examine', join(dir, 'none.img'));
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^llraid: LLRAID_TRACE: expected layers from block, md, nbd, engine, csi, k8s or all, found "raid"\n$/);
  });
});
