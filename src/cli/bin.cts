#!/usr/bin/env node
// The `llraid` executable. It only sizes libuv's thread pool, then loads the command: main.ts,
// or for `serve` (an engine, one per staged volume) serve-main.ts as scripts/build.mjs bundled
// it into one file, which costs an engine 5 MiB less RSS than the modules tsc writes.
// The pool is sized when first used, and loading an ES module already uses it, so this has to
// happen in a CommonJS entry, before the first import. An engine's file I/O goes through that
// pool: on a small node, four threads fight the event loop for the cores (on two cores, 4 KiB
// random I/O through `llraid serve` runs at about 60% of what one I/O thread gives), so the
// default is one thread less than the cores, from one to four. UV_THREADPOOL_SIZE overrides it.

//
// A member whose requests may wait for a device (a file on a disk or network filesystem, a block
// device: filesystem-kind.cts) may hold up to MAX_IN_FLIGHT pool threads for as long as it hangs
// (deadline-io.ts); `serve` gets eight more per such member and lets each have eight in flight
// (with two, the pool was what limited a disk member), so a hung member never leaves the others
// without a thread. Only busy threads cost anything. A pool sized by hand keeps two per member.

import { availableParallelism } from 'node:os';
import { mayWaitForDevice } from '../block/filesystem-kind.cjs';

// An engine started by the node plugin or the engine host inherits their environment, pool size
// included: a size this file chose (LLRAID_POOL_SIZED) is chosen again for the new command.
if (process.env.UV_THREADPOOL_SIZE === undefined || process.env.LLRAID_POOL_SIZED === '1') {
  const cores = availableParallelism();
  const base = Math.min(4, Math.max(1, cores - 1));
  const args = process.argv.slice(2);
  const mayHang = args[0] === 'serve' ? args.filter((a) => a.startsWith('/') && mayWaitForDevice(a)).length : 0;
  const perMember = 8;
  process.env.UV_THREADPOOL_SIZE = String(base + perMember * mayHang);
  process.env.LLRAID_POOL_SIZED = '1';
  if (mayHang > 0) process.env.LLRAID_MEMBER_IN_FLIGHT = String(perMember);
  else delete process.env.LLRAID_MEMBER_IN_FLIGHT;
}
// A path in a variable: the bundle exists only in dist/, so tsc does not look for it. The bundle
// is CommonJS and required, so an engine never starts Node's ES module loader (scripts/build.mjs).
if (process.argv[2] === 'serve') {
  const bundle = '../bundle/serve.cjs';
  module.require(bundle);
} else {
  const entry = './main.js';
  void import(entry);
}
