// The command line that runs this same CLI as a volume engine (`llraid serve`) or a member
// service: the same node and loader flags (tsx in development), plus the V8 flags an engine runs
// with. Every staged volume has an engine process, so its memory counts once per volume.
//
// --max-semi-space-size=1 (MiB): V8 grows its young generation under allocation pressure up to
// 16 MiB per semi-space (two of them), and an engine allocates a little per request all the
// time, so under load its young generation sits at its ceiling. Capped at 1 MiB, bench:nbd
// measured 13-15 MiB less peak RSS for 4 KiB random I/O at QD32, with the same CPU per request
// (8-9 µs either way on the quietest runs). It has to be on node's command line: set later
// (v8.setFlagsFromString) it does not resize a heap already made.
//
// --heap-growing-percent=10: with a young generation this small, what is in flight at each
// scavenge is promoted, and V8 lets the old generation grow to about four times what survived
// its last full collection before the next one (an engine's 6.5 MiB live became 26 MiB of heap
// under 4 KiB random writes, --trace-gc). At 10% the next collection comes at live + 8 MiB (V8's
// smallest step): the heap peaked at 17.6 MiB over the same fio run, each full collection
// costing 1-3 ms about once a second (incremental marking, 5 ms of steps in all).
//
// --initial-old-space-size=4 (MiB): V8 runs its first full collection when the old generation
// reaches this; at its default an engine assembled and idle carries its start's garbage (0.6 MiB
// of RSS) until load makes a collection come, and under load the heap grew to 10.9 MiB before the
// first one came. --optimize-for-size: V8's heuristics for small heaps (more eager collection and
// page release). --no-concurrent-recompilation: TurboFan compiles on the engine's own thread, a
// few hot functions once at warm-up, instead of a compiler thread whose zone memory interleaves
// with the main thread's in glibc's one arena. Together, one sitting, each alternated twice on a
// raid1 (docs/architecture.md, "What an engine costs"): idle 48.2 -> 47.6 MiB, peak over fio's four
// workloads 68.4-69.4 -> 64.5-65.2, each flag left out costing 0.6-2 MiB of that peak, the CPU per
// request within the run-to-run spread.
//
// --expose-gc: an engine at rest after a burst runs one full collection to free the payload
// buffers its pool let go of, which V8 would leave allocated (block/give-back.ts). Without the
// flag it makes a context of its own to get `gc` from, 0.3-0.6 MiB of RssAnon more.

/** V8 flags of every engine process. */
export const ENGINE_NODE_FLAGS: readonly string[] = [
  '--max-semi-space-size=1', '--heap-growing-percent=10', '--initial-old-space-size=4',
  '--optimize-for-size', '--no-concurrent-recompilation', '--expose-gc',
];

/** argv prefix (node, its flags, the CLI script) to which `serve ...` or `member-serve ...` is appended. */
export function engineCommand(): string[] {
  // A flag given to this process already (to try another value) is kept rather than doubled.
  const own = new Set(process.execArgv.map((a) => a.split('=')[0]));
  const flags = ENGINE_NODE_FLAGS.filter((f) => !own.has(f.split('=')[0]));
  return [process.execPath, ...process.execArgv, ...flags, process.argv[1] ?? 'llraid'];
}
