// `performance` in the serve bundle (scripts/build.mjs puts this in for the global and for
// node:perf_hooks). Engine code reads performance.now() only, for durations and deadlines, and
// Node's performance object is node:perf_hooks, whose modules cost an engine 0.2 MiB of RSS for
// nothing else. process.uptime() reads the same monotonic clock (libuv's uv_hrtime) from the
// process's start, which differs from performance.now()'s origin by the few milliseconds node
// takes to boot; nothing compares these times with another process's. The build refuses a
// bundle that uses anything else of `performance`.

import process from 'node:process';

export const performance = { now: () => process.uptime() * 1000 };
