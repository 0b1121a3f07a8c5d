// A real filesystem on `llraid serve`, the way hosts without the nbd module mount volumes:
// nbdfuse exposes the export as a file, losetup makes it a block device, then mkfs.ext4, mount,
// write a tree of files, unmount, remount and compare, and fsck the result.

import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TOOL_ENV, patternBytes, startServe, tool } from './helpers.js';
import { tempDir } from '../support/temp-dir.js';


function tree(root: string): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  const walk = (dir: string, rel: string): void => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      if (e.name === 'lost+found') continue;
      const path = join(dir, e.name);
      if (e.isDirectory()) walk(path, `${rel}${e.name}/`);
      else out.set(`${rel}${e.name}`, readFileSync(path));
    }
  };
  walk(root, '');
  return out;
}

test('ext4 over nbdfuse + losetup on llraid serve keeps a tree of files across remounts', async (t) => {
  // No other suite runs this: where it cannot run it fails, it does not skip.
  assert.ok(process.getuid?.() === 0 && existsSync('/dev/fuse'), 'needs root and /dev/fuse (losetup, mount)');
  const dir = tempDir(t, 'nbd-fuse');
  const disk = join(dir, 'disk.img');
  const fuseDir = join(dir, 'fuse');
  const mnt = join(dir, 'mnt');
  mkdirSync(fuseDir);
  mkdirSync(mnt);
  await tool('truncate', ['-s', '256M', disk]);
  const serve = await startServe(['--file', disk, '--socket', join(dir, 'nbd.sock')]);
  const fuse = spawn('nbdfuse', [join(fuseDir, 'vol'), serve.uri], { env: TOOL_ENV, stdio: 'inherit' });
  const fuseExited = new Promise((resolve) => fuse.once('exit', resolve));
  let loop = '';
  let mounted = false;
  try {
    for (let i = 0; i < 100 && !existsSync(join(fuseDir, 'vol')); i++) await new Promise((r) => setTimeout(r, 100));
    loop = (await tool('losetup', ['--find', '--show', join(fuseDir, 'vol')])).trim();
    await tool('mkfs.ext4', ['-q', '-F', loop]);
    await tool('mount', [loop, mnt]);
    mounted = true;
    const files = new Map<string, Buffer>();
    for (const d of ['a', 'b/c', 'b/d']) {
      mkdirSync(join(mnt, d), { recursive: true });
      for (let i = 1; i <= 12; i++) files.set(`${d}/f${i}`, patternBytes(i * 5003 + d.length * 131, i * 31 + d.length));
    }
    files.set('big', patternBytes(12 * 1024 * 1024, 99));
    for (const [name, data] of files) writeFileSync(join(mnt, name), data);
    await tool('umount', [mnt]);
    mounted = false;
    await tool('losetup', ['--detach', loop]);
    loop = '';
    await tool('blockdev', ['--flushbufs', join(fuseDir, 'vol')]).catch(() => undefined);

    loop = (await tool('losetup', ['--find', '--show', join(fuseDir, 'vol')])).trim();
    await tool('mount', [loop, mnt]);
    mounted = true;
    const back = tree(mnt);
    assert.deepEqual([...back.keys()].sort(), [...files.keys()].sort());
    for (const [name, data] of files) assert.ok(back.get(name)!.equals(data), `${name} reads back as written`);
    await tool('umount', [mnt]);
    mounted = false;
    await tool('fsck.ext4', ['-n', '-f', loop]);
  } finally {
    if (mounted) await tool('umount', [mnt]).catch(() => undefined);
    if (loop) await tool('losetup', ['--detach', loop]).catch(() => undefined);
    await tool('fusermount3', ['-u', fuseDir]).catch(() => tool('umount', [fuseDir]).catch(() => undefined));
    await fuseExited;
    assert.equal(await serve.stop(), 0);
  }
});
