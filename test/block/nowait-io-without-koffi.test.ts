// Without koffi (an optional native module that may fail to load), a member on a disk gets no
// inline path at all: every request goes through the pool under its deadline, never back to an
// unbounded readSync/writeSync, and the process says so once, however many members it opens.
// The child process makes loading koffi's binary (block/libc.ts requires it) fail with a require
// hook, as a platform without a prebuilt binary would.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { tempDir } from '../support/temp-dir.js';

const run = promisify(execFile);
const ROOT = new URL('../..', import.meta.url).pathname;

const HOOK = `const Module = require('node:module');
const load = Module._load;
Module._load = function (request, ...rest) {
  if (request === 'koffi' || request.startsWith('koffi/')) throw new Error('koffi is not installed (test hook)');
  return load.call(this, request, ...rest);
};`;

test('without koffi, disk members make every request through the pool, tmpfs ones stay inline, and one warning says so', async (t) => {
  const dir = tempDir(t, 'no-koffi');
  const shm = tempDir(t, 'no-koffi', '/dev/shm');
  writeFileSync(join(dir, 'hook.cjs'), HOOK);
  const script = join(dir, 'child.mts');
  writeFileSync(script, `
const { FileDevice } = await import(${JSON.stringify(join(ROOT, 'src/block/file-device.ts'))});
const out = {};
for (const [name, base] of [['disk-a', ${JSON.stringify(dir)}], ['disk-b', ${JSON.stringify(dir)}], ['tmpfs', ${JSON.stringify(shm)}]]) {
  const dev = await FileDevice.open(base + '/' + name, { create: { size: 1 << 20 } });
  const data = Buffer.alloc(4096, name.length);
  const wroteNow = dev.writeNow(0, [data]);
  if (!wroteNow) await dev.write(0, data);
  await dev.flush();
  const back = Buffer.alloc(4096);
  const readNow = dev.readNow(0, back);
  const again = await dev.read(0, 4096);
  out[name] = { inlineIo: dev.inlineIo, wroteNow, readNow, intact: again.equals(data) && (!readNow || back.equals(data)) };
  await dev.close();
}
process.stdout.write(JSON.stringify(out));
`);
  const { stdout, stderr } = await run(process.execPath, ['-r', join(dir, 'hook.cjs'), '--import', 'tsx', script], { cwd: ROOT });
  assert.deepEqual(JSON.parse(stdout), {
    'disk-a': { inlineIo: false, wroteNow: false, readNow: false, intact: true },
    'disk-b': { inlineIo: false, wroteNow: false, readNow: false, intact: true },
    tmpfs: { inlineIo: true, wroteNow: true, readNow: true, intact: true },
  });
  const warnings = stderr.split('\n').filter((l) => l.includes('LLRAID_NO_NOWAIT_IO'));
  assert.equal(warnings.length, 1, `one warning, for two disk members:\n${stderr}`);
  assert.match(warnings[0]!, /cannot load koffi/);
});
