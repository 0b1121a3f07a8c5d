#!/usr/bin/env node
// The `llraid` executable. It only sizes libuv's thread pool, then loads the command (main.ts).
// The pool is sized when first used, and loading an ES module already uses it, so this has to
// happen in a CommonJS entry, before the first import. An engine's file I/O goes through that
// pool: on a small node, four threads fight the event loop for the cores (on two cores, 4 KiB
// random I/O through `llraid serve` runs at about 60% of what one I/O thread gives), so the
// default is one thread less than the cores, from one to four. UV_THREADPOOL_SIZE overrides it.

import { availableParallelism } from 'node:os';

if (process.env.UV_THREADPOOL_SIZE === undefined) {
  const cores = availableParallelism();
  process.env.UV_THREADPOOL_SIZE = String(Math.min(4, Math.max(1, cores - 1)));
}
void import('./main.js');
