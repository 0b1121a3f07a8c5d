// `performance` in the serve bundle (scripts/build.mjs puts this in for the global and for
// node:perf_hooks). Engine code reads performance.now() only, for durations and deadlines, and
// Node's performance object is node:perf_hooks, whose modules cost an engine 0.2 MiB of RSS for
// nothing else. process.hrtime() reads the same monotonic clock (libuv's uv_hrtime) from another
// origin; nothing compares these times with another process's. It costs about what
// performance.now() does (76 ns against 61-70 on this machine, a two-number array per call);
// process.uptime(), the same clock without the array, costs 122-130 ns, and the file path reads
// the clock around every inline read and write (block/positional-io.ts). The build refuses a
// bundle that uses anything else of `performance`.

import process from 'node:process';

export const performance = {
  now: () => {
    const [s, ns] = process.hrtime();
    return s * 1e3 + ns / 1e6;
  },
};
