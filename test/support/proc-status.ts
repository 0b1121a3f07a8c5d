// A field of /proc/PID/status in KiB (VmRSS, RssAnon, ...): what the memory tests and benchmarks
// read of a process. Throws when the process is gone or the field is missing.

import { readFileSync } from 'node:fs';

export function statusKiB(pid: number, field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`expected a ${field} line in /proc/${pid}/status`);
  return Number(m[1]);
}
