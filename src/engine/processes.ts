// Finds the node's helper processes (engines, nbdfuse, nbd-client) by their command lines in
// /proc, so a restarted plugin finds what its predecessor started without a pid database.

import { promises as fs } from 'node:fs';

export interface ProcessInfo {
  pid: number;
  argv: string[];
  /** When it started, in clock ticks since boot (/proc/PID/stat's starttime): which of two came first. */
  startedAt: number;
}

/** Every live process whose argv contains `needle` as a whole argument. */
export async function findProcesses(needle: string): Promise<ProcessInfo[]> {
  const out: ProcessInfo[] = [];
  for (const name of await fs.readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let raw: string;
    try {
      raw = await fs.readFile(`/proc/${name}/cmdline`, 'utf8');
    } catch {
      continue;
    }
    const argv = raw.split('\0').filter((a) => a !== '');
    if (!argv.includes(needle)) continue;
    const stat = await processStat(Number(name));
    if (stat !== undefined && stat.state !== 'Z') out.push({ pid: Number(name), argv, startedAt: stat.startedAt });
  }
  return out;
}

/** A process's state letter and start time (/proc/PID/stat); undefined once it is gone. */
async function processStat(pid: number): Promise<{ state: string; startedAt: number } | undefined> {
  try {
    const stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8');
    // The fields after the command's closing parenthesis: state is the 3rd field, starttime the 22nd.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { state: fields[0] ?? '', startedAt: Number(fields[19]) };
  } catch {
    return undefined;
  }
}

async function isZombie(pid: number): Promise<boolean> {
  const stat = await processStat(pid);
  return stat === undefined || stat.state === 'Z';
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Waits until `pid` has exited, up to `timeoutMs` (0: looks once); resolves whether it did. */
export async function waitExit(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (!isAlive(pid) || (await isZombie(pid))) return true;
    if (Date.now() >= deadline) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
}
