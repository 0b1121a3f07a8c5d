// What the benchmarks read of a process from /proc: its resident memory and its CPU time.

import { readFileSync } from 'node:fs';
import { statusKiB } from '../test/support/proc-status.js';

/** Clock ticks per second of /proc/PID/stat's times (USER_HZ, 100 on Linux). */
const CLK_TCK = 100;

/** VmRSS of `pid` in KiB; 0 once the process is gone. */
export function rssKiB(pid: number): number {
  return statusOrZero(pid, 'VmRSS');
}

/**
 * RssAnon of `pid` in KiB: the resident memory that is the process's own. The rest of VmRSS is
 * file pages (the node binary, shared libraries) that every process running them shares.
 */
export function anonKiB(pid: number): number {
  return statusOrZero(pid, 'RssAnon');
}

/** statusKiB, 0 once the process is gone (a sampler may outlive it). */
function statusOrZero(pid: number, field: string): number {
  try {
    return statusKiB(pid, field);
  } catch {
    return 0;
  }
}

/** utime + stime of `pid` (all its threads) in seconds. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / CLK_TCK;
}

/**
 * The scheduler's account of the thread `tid` (for a process's main thread, its pid) from
 * /proc/PID/task/TID/schedstat: seconds it ran on a CPU, and seconds it was runnable and waited
 * on a run queue for one. The second says whether a busy thread was short of CPU, not of work.
 */
export function schedSeconds(pid: number, tid = pid): { onCpu: number; waiting: number } {
  const [onCpu, waiting] = readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').trim().split(' ').map(Number);
  return { onCpu: onCpu! / 1e9, waiting: waiting! / 1e9 };
}
