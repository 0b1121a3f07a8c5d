// Member files with a bandwidth of their own, for servers that open their members themselves (an
// `llraid serve` process): each is a file on tmpfs behind nbdkit's rate filter, seen as a regular
// file through nbdfuse. Files on one tmpfs share one memory bus, so every extra member write slows
// all the others and a mirror can never write as fast as one file; disks each have their own
// bandwidth, which this gives back. (bench:parity's RateLimitedDevice does the same inside the
// process, where the bench builds the array itself.)
//
// Only writes are bounded in effect: the kernel caches a FUSE file's pages, so reads of what was
// written come from the page cache.

import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export interface RatedMembers {
  /** The FUSE files, one per member. */
  paths: string[];
  /** Unmounts the files and stops their servers. */
  stop(): Promise<void>;
}

/**
 * `count` member files of `bytes` each under `dir`, each moving at most `bytesPerSecond` (reads
 * and writes together, as nbdkit's rate filter counts them).
 */
export async function startRatedMembers(dir: string, count: number, bytes: number, bytesPerSecond: number): Promise<RatedMembers> {
  const children: ChildProcess[] = [];
  const mounts: string[] = [];
  const stop = async (): Promise<void> => {
    for (const m of mounts) await run('fusermount3', ['-u', '-z', m]).catch(() => undefined);
    for (const c of children) {
      if (c.exitCode === null && c.signalCode === null) {
        const exited = new Promise((r) => c.once('exit', r));
        c.kill('SIGTERM');
        await exited;
      }
    }
  };
  try {
    const paths: string[] = [];
    for (let i = 0; i < count; i++) {
      const home = join(dir, `member-${i}`);
      mkdirSync(join(home, 'fuse'), { recursive: true });
      const backing = join(home, 'backing.img');
      const sock = join(home, 'nbdkit.sock');
      await run('truncate', ['-s', String(bytes), backing]);
      // The rate is in bits per second; burstiness (seconds of the rate saved up while idle) is
      // kept short so that fio's ramp spends it before the measured part.
      children.push(spawn('nbdkit', ['--foreground', '--exit-with-parent', '--unix', sock, '--filter=rate', 'file', `file=${backing}`,
        `rate=${bytesPerSecond * 8}`, 'burstiness=0.5'], { stdio: ['ignore', 'ignore', 'inherit'] }));
      await waitFor(`nbdkit of member ${i}`, () => existsSync(sock));
      // nbdfuse MOUNTPOINT/FILENAME: a filesystem at MOUNTPOINT holding the one file.
      const file = join(home, 'fuse', 'disk');
      children.push(spawn('nbdfuse', [file, '--unix', sock], { stdio: ['ignore', 'ignore', 'inherit'] }));
      mounts.push(join(home, 'fuse'));
      await waitFor(`nbdfuse of member ${i}`, () => existsSync(file) && statSync(file).size === bytes);
      paths.push(file);
    }
    return { paths, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

async function waitFor(what: string, ready: () => boolean): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (ready()) return;
    await sleep(50);
  }
  throw new Error(`${what}: not ready within 10 s`);
}
