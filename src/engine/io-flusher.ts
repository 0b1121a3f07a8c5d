// PR_SET_IO_FLUSHER for the processes in a volume's I/O path (DESIGN.md §6). A volume engine
// serves a block device that the same host's kernel may need to write back to free memory; if
// the engine itself then blocks in memory reclaim waiting on that writeback, the node deadlocks.
// The flag (Linux ≥ 5.6, needs CAP_SYS_RESOURCE) makes the kernel reclaim without I/O for the
// process (PF_MEMALLOC_NOIO) and throttle it only on its own writeback (PF_LOCAL_THROTTLE).
//
// The flag is per thread and inherited by every thread and process created afterwards, across
// execve. So it is set once in the process that starts engines (the engine host, or the node
// plugin when it runs engines itself) before it starts any: every thread of every engine and of
// its nbdfuse/nbd-client then carries it, V8's own threads included, which setting it inside an
// engine would miss. Node cannot call prctl(2), so koffi (block/libc.ts) makes the one call.

import { readdirSync, readFileSync } from 'node:fs';
import { loadLibc, type Libc } from '../block/libc.js';

const PR_SET_IO_FLUSHER = 57;
/** task->flags bits the flag sets (include/linux/sched.h), as /proc/PID/stat field 9 shows them. */
const PF_MEMALLOC_NOIO = 0x00080000;
const PF_LOCAL_THROTTLE = 0x00100000;

export type IoFlusherResult = { ok: true } | { ok: false; reason: string };

/** Sets PR_SET_IO_FLUSHER on the calling thread (and so on everything it starts from now on). */
export async function enableIoFlusher(): Promise<IoFlusherResult> {
  if (isIoFlusher('self')) return { ok: true };
  let loaded: Libc;
  try {
    loaded = await loadLibc();
  } catch (err) {
    return { ok: false, reason: `cannot load koffi to call prctl: ${(err as Error).message}` };
  }
  const { koffi, libc } = loaded;
  const prctl = libc.func('int prctl(int, unsigned long, unsigned long, unsigned long, unsigned long)');
  if (prctl(PR_SET_IO_FLUSHER, 1, 0, 0, 0) === 0) return { ok: true };
  const errno = koffi.errno();
  const why = errno === 1 ? 'EPERM: needs CAP_SYS_RESOURCE' : errno === 22 ? 'EINVAL: the kernel is older than 5.6' : `errno ${errno}`;
  return { ok: false, reason: `prctl(PR_SET_IO_FLUSHER) failed: ${why}` };
}

/** Whether a thread of a process carries the flag: `pid` 'self', a pid, or 'PID/task/TID'. */
export function isIoFlusher(pid: number | string): boolean {
  const flags = taskFlags(`/proc/${pid}/stat`);
  return flags !== undefined && (flags & PF_MEMALLOC_NOIO) !== 0 && (flags & PF_LOCAL_THROTTLE) !== 0;
}

/**
 * How many of a process's threads carry the flag, of how many: "all" is what an engine started by
 * a flagged parent shows; a process that set it on itself has it only on threads made after.
 */
export function ioFlusherThreads(pid: number | 'self'): { flagged: number; threads: number } {
  let threads = 0;
  let flagged = 0;
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return { flagged: 0, threads: 0 };
  }
  for (const tid of tids) {
    const flags = taskFlags(`/proc/${pid}/task/${tid}/stat`);
    if (flags === undefined) continue;
    threads++;
    if ((flags & PF_MEMALLOC_NOIO) !== 0 && (flags & PF_LOCAL_THROTTLE) !== 0) flagged++;
  }
  return { flagged, threads };
}

/** Field 9 (flags) of a /proc stat file; the command name (field 2) may hold spaces and parens. */
function taskFlags(statPath: string): number | undefined {
  let stat: string;
  try {
    stat = readFileSync(statPath, 'utf8');
  } catch {
    return undefined;
  }
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 (state), so field 9 is fields[6].
  const flags = Number(fields[6]);
  return Number.isFinite(flags) ? flags : undefined;
}
