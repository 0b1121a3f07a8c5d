// Exclusive ownership of a member file or device: an OS lock taken by whoever opens it for
// writing, so a second opener (another engine, an offline `llraid assemble`, a CSI expansion)
// fails with an error naming the holder instead of writing superblocks under a live array.
//
// The lock is flock(2), which belongs to the open file description, not to the process: it is
// released only when every descriptor for that description is closed, so it dies with the
// opener (a kill -9 frees it) and never outlives it. Node has no flock, so util-linux's `flock`
// takes it on the opener's descriptor, inherited as fd 3; the description is shared, so the lock
// stays held after that child exits. This costs one short-lived process per member open (a few
// ms) and no native module in the engine.
//
// flock is advisory: tools that do not take it (dd, a hand-run mdadm) are not kept out. Block
// devices are also opened O_EXCL by FileDevice, which the kernel enforces against mounts and
// other O_EXCL openers (mdadm, mkfs).

import { spawn } from 'node:child_process';
import type { Stats } from 'node:fs';
import { readdir, readFile } from '../common/callback-fs.js';
import { BlockError, BusyError } from './errors.js';

/** flock's exit status when the lock is held elsewhere (chosen so it cannot be confused with usage errors). */
const CONFLICT_EXIT = 75;

/**
 * Takes an exclusive lock on `fd` (an open descriptor of `path`, described by `st`) without
 * waiting. Rejects with BusyError naming the holder when another open file description holds
 * one, and with BlockError EIO when the lock cannot be taken at all.
 */
export async function lockExclusive(fd: number, path: string, st: Stats): Promise<void> {
  const status = await new Promise<number | null>((resolve, reject) => {
    const child = spawn('flock', ['--exclusive', '--nonblock', '--conflict-exit-code', String(CONFLICT_EXIT), '3'], {
      stdio: ['ignore', 'ignore', 'pipe', fd],
    });
    let stderr = '';
    child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.once('error', (err) => reject(new BlockError('EIO', `${path}: cannot lock it for exclusive use: expected the flock command (util-linux), found: ${err.message}`)));
    child.once('close', (code) => {
      if (code !== 0 && code !== CONFLICT_EXIT) {
        reject(new BlockError('EIO', `${path}: cannot lock it for exclusive use: flock exited ${code}: ${stderr.trim()}`));
      } else resolve(code);
    });
  });
  if (status === 0) return;
  const holder = await findLockHolder(st);
  throw new BusyError(`${path}: in use by ${holder ?? 'another process (not visible from this PID namespace)'}; stop it first`);
}

/**
 * Who holds the flock on the file `st` describes: "pid N (command line)". /proc/locks names the
 * process that took a lock, which for ours is the short-lived flock child, so the holder is
 * found instead as the process with a descriptor whose fdinfo lists a lock on that inode.
 */
export async function findLockHolder(st: Stats): Promise<string | undefined> {
  const key = lockKey(st);
  let pids: string[];
  try {
    pids = (await readdir('/proc')).filter((n) => /^\d+$/.test(n));
  } catch {
    return undefined;
  }
  for (const pid of pids) {
    let fds: string[];
    try {
      fds = await readdir(`/proc/${pid}/fdinfo`);
    } catch {
      continue; // gone, or not ours to read
    }
    for (const fd of fds) {
      const info = await readFile(`/proc/${pid}/fdinfo/${fd}`, 'utf8').catch(() => '');
      if (!info.includes('lock:')) continue;
      if (info.split('\n').some((l) => l.startsWith('lock:') && l.includes('FLOCK') && l.includes(key))) {
        const cmd = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
        const argv = cmd.split('\0').filter((a) => a !== '').join(' ');
        return `pid ${pid}${argv ? ` (${argv.length > 160 ? `${argv.slice(0, 157)}...` : argv})` : ''}`;
      }
    }
  }
  return undefined;
}

/** The "major:minor:inode" the kernel prints for a lock on the file `st` describes (hex device numbers). */
function lockKey(st: Stats): string {
  const dev = st.dev;
  // Linux's new_encode_dev layout, as stat(2) returns st_dev.
  const major = Math.floor(dev / 256) % 4096;
  const minor = (dev % 256) + Math.floor(dev / 1048576) * 256;
  const hex = (n: number): string => n.toString(16).padStart(2, '0');
  return ` ${hex(major)}:${hex(minor)}:${st.ino} `;
}
