// block/libc.ts loads koffi's prebuilt binary for this platform itself (koffi's index.js would
// load its installer's https, http and zlib in every engine): the binary of the installed
// package's version, and a clear refusal on a platform llraid does not run on.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { koffiBinaryPath, loadLibc } from '../../src/block/libc.js';

test('loadLibc gives koffi\'s binary of the installed version, and libc calls through it work', async () => {
  const { koffi, libc } = await loadLibc();
  const { version } = createRequire(import.meta.url)('koffi/package.json') as { version: string };
  assert.equal((koffi as unknown as { version: string }).version, version);
  const getpid = libc.func('int getpid(void)') as () => number;
  assert.equal(getpid(), process.pid);
});

test('the binary is glibc Linux x64 or arm64; any other platform is refused by name', () => {
  assert.equal(koffiBinaryPath('linux', 'x64'), 'koffi/build/koffi/linux_x64/koffi.node');
  assert.equal(koffiBinaryPath('linux', 'arm64'), 'koffi/build/koffi/linux_arm64/koffi.node');
  assert.throws(() => koffiBinaryPath('darwin', 'arm64'), /glibc Linux on x64 or arm64 only, not darwin arm64/);
  assert.throws(() => koffiBinaryPath('linux', 'ia32'), /not linux ia32/);
});
