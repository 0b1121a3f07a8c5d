// Path confinement on real directories and symlinks: realPath walks a path as the kernel does,
// and KubeletPaths.confine accepts only what resolves strictly below the kubelet directory.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CsiError } from '../../src/csi/errors.js';
import { KubeletPaths, realPath, UnresolvablePathError } from '../../src/csi/kubelet-paths.js';

/** A temp dir with `kubelet/` and `outside/` in it, removed after the test. */
function layout(t: { after(fn: () => void): void }): { base: string; kubelet: string; outside: string } {
  const base = mkdtempSync(path.join(os.tmpdir(), 'llraid-paths-'));
  t.after(() => rmSync(base, { recursive: true, force: true }));
  const kubelet = path.join(base, 'kubelet');
  const outside = path.join(base, 'outside');
  mkdirSync(path.join(kubelet, 'pods', 'p'), { recursive: true });
  mkdirSync(outside);
  return { base, kubelet, outside };
}

async function refusedWith(p: Promise<unknown>, pattern: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof CsiError, `expected a CsiError, found ${String(err)}`);
    assert.equal(err.code, 'INVALID_ARGUMENT');
    assert.match(err.message, pattern);
    return true;
  });
}

test('realPath takes .. against the symlink\'s target, as the kernel does, not against the text', async (t) => {
  const { kubelet, outside } = layout(t);
  mkdirSync(path.join(outside, 'deep'));
  symlinkSync(path.join(outside, 'deep'), path.join(kubelet, 'pods', 'link'));
  // Textually kubelet/pods/x; the kernel goes link -> outside/deep, .. -> outside, then x.
  assert.equal(await realPath(`${kubelet}/pods/link/../x`), path.join(outside, 'x'));
});

test('realPath follows relative symlinks from the link\'s directory and chains of them', async (t) => {
  const { kubelet, outside } = layout(t);
  symlinkSync('../outside', path.join(kubelet, 'up'));
  symlinkSync('up', path.join(kubelet, 'again'));
  assert.equal(await realPath(path.join(kubelet, 'again', 'f')), path.join(outside, 'f'));
});

test('realPath keeps a missing tail as written and refuses .. below a missing directory', async (t) => {
  const { kubelet } = layout(t);
  assert.equal(await realPath(`${kubelet}/pods/p/new/deeper`), path.join(kubelet, 'pods/p/new/deeper'));
  await assert.rejects(realPath(`${kubelet}/missing/../../x`), UnresolvablePathError);
});

test('realPath gives up on a symlink loop', async (t) => {
  const { kubelet } = layout(t);
  symlinkSync('b', path.join(kubelet, 'a'));
  symlinkSync('a', path.join(kubelet, 'b'));
  await assert.rejects(realPath(path.join(kubelet, 'a', 'x')), /more than 40 symlinks/);
});

test('confine accepts paths below the root and answers their resolved form', async (t) => {
  const { kubelet } = layout(t);
  symlinkSync(path.join(kubelet, 'pods', 'p'), path.join(kubelet, 'pods', 'inside'));
  const paths = new KubeletPaths(kubelet);
  assert.equal(await paths.confine(path.join(kubelet, 'pods', 'p', 'mount'), 'f'), path.join(kubelet, 'pods', 'p', 'mount'));
  assert.equal(await paths.confine(path.join(kubelet, 'pods', 'inside', 'mount'), 'f'), path.join(kubelet, 'pods', 'p', 'mount'));
  assert.equal(await paths.confine(`${kubelet}/pods/p/../p/./mount`, 'f'), path.join(kubelet, 'pods', 'p', 'mount'));
});

test('confine refuses paths outside the root, the root itself, and relative paths, naming field and root', async (t) => {
  const { kubelet, outside } = layout(t);
  const paths = new KubeletPaths(kubelet);
  await refusedWith(paths.confine(path.join(outside, 'f'), 'X: target_path'), new RegExp(`^X: target_path ${outside}/f is outside the kubelet directory ${kubelet}: expected a path below it$`));
  await refusedWith(paths.confine(`${kubelet}/../outside/f`, 'X: target_path'), /resolves to .*\/outside\/f and is outside the kubelet directory/);
  await refusedWith(paths.confine(kubelet, 'X: target_path'), /is outside the kubelet directory/);
  await refusedWith(paths.confine(`${kubelet}-sibling/f`, 'X: target_path'), /is outside the kubelet directory/);
  await refusedWith(paths.confine('pods/p', 'X: target_path'), /"pods\/p": expected an absolute path below the kubelet directory/);
  await refusedWith(paths.confine(`${kubelet}/a\0b`, 'X: target_path'), /without NUL bytes/);
});

test('confine refuses a symlink below the root that leads outside, at any component', async (t) => {
  const { kubelet, outside } = layout(t);
  symlinkSync(outside, path.join(kubelet, 'pods', 'p', 'escape'));
  symlinkSync('/', path.join(kubelet, 'pods', 'p', 'slash'));
  const paths = new KubeletPaths(kubelet);
  await refusedWith(paths.confine(path.join(kubelet, 'pods', 'p', 'escape'), 'f'), /resolves to .*\/outside and is outside/);
  await refusedWith(paths.confine(path.join(kubelet, 'pods', 'p', 'escape', 'new', 'dir'), 'f'), /outside\/new\/dir/);
  await refusedWith(paths.confine(path.join(kubelet, 'pods', 'p', 'slash', 'etc', 'passwd'), 'f'), /resolves to \/etc\/passwd/);
});

test('a root that is itself a symlink confines to its target', async (t) => {
  const { base, kubelet } = layout(t);
  const alias = path.join(base, 'alias');
  symlinkSync(kubelet, alias);
  const paths = new KubeletPaths(alias);
  assert.equal(await paths.confine(path.join(alias, 'pods', 'p', 'm'), 'f'), path.join(kubelet, 'pods', 'p', 'm'));
  assert.equal(await paths.confine(path.join(kubelet, 'pods', 'p', 'm'), 'f'), path.join(kubelet, 'pods', 'p', 'm'));
});
