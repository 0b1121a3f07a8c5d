#!/usr/bin/env node
// The `llraid` executable. It only sizes libuv's thread pool, then loads the command (main.ts).
// The pool is sized when first used, and loading an ES module already uses it, so this has to
// happen in a CommonJS entry, before the first import. An engine's file I/O goes through that
// pool: on a small node, four threads fight the event loop for the cores (on two cores, 4 KiB
// random I/O through `llraid serve` runs at about 60% of what one I/O thread gives), so the
// default is one thread less than the cores, from one to four. UV_THREADPOOL_SIZE overrides it.

//
// A member whose requests may wait for a device (a file on a disk or network filesystem, a block
// device: filesystem-kind.cts) may hold up to MAX_IN_FLIGHT (2) pool threads for as long as it
// hangs; `serve` gets that many more per such member, so a hung member never leaves the others
// without a thread. Only busy threads cost anything.

import { availableParallelism } from 'node:os';
import { mayWaitForDevice } from '../block/filesystem-kind.cjs';

if (process.env.UV_THREADPOOL_SIZE === undefined) {
  const cores = availableParallelism();
  const base = Math.min(4, Math.max(1, cores - 1));
  const args = process.argv.slice(2);
  const mayHang = args[0] === 'serve' ? args.filter((a) => a.startsWith('/') && mayWaitForDevice(a)).length : 0;
  process.env.UV_THREADPOOL_SIZE = String(base + 2 * mayHang);
}
void import('./main.js');
