// Giving the memory of buffers a process has let go of back to the kernel, for code that has just
// dropped megabytes of them at once (a pool trimmed once idle: size-class-pool.ts). Two things
// stand between a dropped Node Buffer and the kernel, and an engine at rest after a burst of
// 1 MiB requests met both (docs/architecture.md, "What an engine costs"):
//
// - V8 frees an ArrayBuffer's memory (outside its heap) only when a full collection finds the
//   ArrayBuffer unreachable, and it runs one when its own heap has grown, when external memory
//   has grown 64 MiB past the last one, or from its memory reducer, which runs in a process's
//   first seconds and afterwards only after a collection that found the heap grown. None came:
//   the 31 MiB the payload pool let go stayed for as long as the engine stayed at rest (60 s and
//   more measured). So a full collection is run here: V8's `gc`, which node's --expose-gc
//   installs (ENGINE_NODE_FLAGS gives it to every engine); a process started without it gets one
//   on first use, the flag set at run time and `gc` taken from a new context, where V8 installs
//   it then.
// - glibc serves blocks of at least its mmap threshold (128 KiB) with mmap and unmaps them when
//   freed, but freeing such a block raises the threshold to the block's size: from then on 1 MiB
//   buffers come from its heap, and freed they stay there, resident. An engine's second burst
//   kept +31 MiB RssAnon at rest though V8 had freed every buffer. So on first use the threshold
//   is fixed at glibc's default (mallopt, through koffi: libc.ts), which stops it moving; unless
//   the environment fixed it before the process started (GLIBC_TUNABLES, which every engine gets:
//   engine/supervisor.ts ENGINE_ENV), where loading koffi would only add its 6 MiB of RSS (2.3
//   anonymous) in the middle of the burst that led here.

import { createRequire } from 'node:module';
import { loadLibc } from './libc.js';

/** Less than this let go at once is not worth a collection (about 15 ms of an engine's thread). */
export const GIVE_BACK_MIN_BYTES = 2 * 1024 * 1024;

/** mallopt(3) parameters (malloc.h) and glibc's default for both. */
const M_TRIM_THRESHOLD = -1;
const M_MMAP_THRESHOLD = -3;
const DEFAULT_THRESHOLD = 128 * 1024;

type Collector = () => void;

/** Settles once glibc's thresholds are fixed (or could not be); then the collector is known. */
let ready: Promise<Collector | null> | undefined;

/**
 * Gives back what the caller just let go of, if that is at least GIVE_BACK_MIN_BYTES: a full
 * collection, in a microtask (the first call first fixes glibc's thresholds). Resolves with
 * whether a collection ran.
 */
export async function giveBack(bytes: number): Promise<boolean> {
  if (bytes < GIVE_BACK_MIN_BYTES) return false;
  ready ??= prepare();
  const collect = await ready;
  if (collect === null) return false;
  collect();
  return true;
}

async function prepare(): Promise<Collector | null> {
  if (!thresholdFixedAtStart(process.env)) await fixMallocThresholds();
  return findCollector();
}

/** Whether glibc's mmap threshold was set when the process started (setting it also stops the trim threshold moving). */
function thresholdFixedAtStart(env: NodeJS.ProcessEnv): boolean {
  return /(^|:)glibc\.malloc\.mmap_threshold=/.test(env.GLIBC_TUNABLES ?? '') || env.MALLOC_MMAP_THRESHOLD_ !== undefined;
}

async function fixMallocThresholds(): Promise<void> {
  try {
    const { libc } = await loadLibc();
    const mallopt = libc.func('int mallopt(int, int)') as (param: number, value: number) => number;
    // mallopt returns 1 on success; either call also stops glibc from moving both thresholds.
    if (mallopt(M_MMAP_THRESHOLD, DEFAULT_THRESHOLD) !== 1 || mallopt(M_TRIM_THRESHOLD, DEFAULT_THRESHOLD) !== 1) {
      throw new Error('mallopt refused the thresholds');
    }
  } catch (err) {
    process.emitWarning(`cannot fix glibc's mmap threshold (${(err as Error).message}): large buffers freed after the first may stay resident in glibc's heap`, { code: 'LLRAID_NO_MALLOPT' });
  }
}

function findCollector(): Collector | null {
  const own = (globalThis as { gc?: unknown }).gc;
  if (typeof own === 'function') return own as Collector;
  try {
    // Loaded here, not imported: node:vm is not loaded otherwise, and most processes never come this far.
    const require = createRequire(import.meta.url);
    const { setFlagsFromString } = require('node:v8') as typeof import('node:v8');
    const { runInNewContext } = require('node:vm') as typeof import('node:vm');
    setFlagsFromString('--expose-gc');
    const made = runInNewContext('gc') as unknown;
    if (typeof made !== 'function') throw new Error('a new context has no gc');
    return made as Collector;
  } catch (err) {
    process.emitWarning(`cannot get V8's gc (${(err as Error).message}): buffers let go of stay allocated until V8 collects by itself; start node with --expose-gc`, { code: 'LLRAID_NO_GC' });
    return null;
  }
}
