// FUSE attach mode: nbdfuse exposes the NBD export as a file, losetup makes that file a block
// device. For hosts without the nbd kernel module (this is how the test machines attach).
//
// Layout: <runDir>/<volumeId>/fuse/ is the FUSE mount point and fuse/nbd the export's file;
// the loop device backed by that file is the volume's device.

import { spawn } from 'node:child_process';
import { openSync, closeSync, promises as fs } from 'node:fs';
import path from 'node:path';
import type { Attacher } from './attach.js';
import { CsiError } from './errors.js';
import { run } from './exec.js';
import { mountAt } from './mounts.js';
import { findProcesses, waitExit } from '../engine/processes.js';

export class FuseAttacher implements Attacher {
  readonly mode = 'fuse' as const;
  constructor(private readonly runDir: string) {}

  private fuseDir(volumeId: string): string {
    return path.join(this.runDir, volumeId, 'fuse');
  }

  private exportFile(volumeId: string): string {
    return path.join(this.fuseDir(volumeId), 'nbd');
  }

  async attach(volumeId: string, socket: string): Promise<string> {
    const existing = await this.find(volumeId, socket);
    if (existing) return existing;
    const dir = this.fuseDir(volumeId);
    await fs.mkdir(dir, { recursive: true });
    if (!(await mountAt(dir))) await this.startNbdfuse(volumeId, socket);
    const r = await run('losetup', ['--find', '--show', this.exportFile(volumeId)]);
    return r.stdout.trim();
  }

  private async startNbdfuse(volumeId: string, socket: string): Promise<void> {
    const dir = this.fuseDir(volumeId);
    const pidFile = path.join(this.runDir, volumeId, 'nbdfuse.pid');
    const logFile = path.join(this.runDir, volumeId, 'nbdfuse.log');
    await fs.rm(pidFile, { force: true });
    const log = openSync(logFile, 'a');
    // Detached: the FUSE server must outlive a plugin restart, like the mount that uses it.
    const child = spawn('nbdfuse', ['-P', pidFile, this.exportFile(volumeId), '--unix', socket], {
      detached: true,
      stdio: ['ignore', log, log],
    });
    closeSync(log);
    let exited: number | null | undefined;
    child.on('exit', (code) => (exited = code));
    child.unref();
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      if (exited !== undefined) break;
      try {
        await fs.access(pidFile);
        return;
      } catch {
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    const tail = await fs.readFile(logFile, 'utf8').catch(() => '');
    throw new CsiError('INTERNAL', `nbdfuse for ${socket}: expected it to mount ${dir}, it ${exited !== undefined ? `exited (${exited})` : 'timed out'}: ${tail.trim().split('\n').slice(-3).join('; ')}`);
  }

  /**
   * Lists loop devices rather than `losetup -j FILE`: the latter stats the file, which fails
   * once the FUSE server is gone, and a dead attachment must still be found to be removed.
   */
  async find(volumeId: string, _socket?: string): Promise<string | undefined> {
    const file = this.exportFile(volumeId);
    const r = await run('losetup', ['--list', '--json', '--output', 'NAME,BACK-FILE']);
    if (r.stdout.trim() === '') return undefined;
    const list = JSON.parse(r.stdout) as { loopdevices?: Array<{ name: string; 'back-file': string | null }> };
    const hit = list.loopdevices?.find((d) => (d['back-file'] ?? '').replace(/ \(deleted\)$/, '') === file);
    return hit?.name;
  }

  /**
   * nbdfuse does not reconnect: once the engine it connected to is gone, its file fails every
   * request (nbdfuse 1.14 aborts at the first, an assertion in its completion callback), while
   * the process itself lives on until then. So an attachment is live only while its nbdfuse is
   * no older than the engine serving the socket now, i.e. connected to that one; an engine that
   * died, or was started again under it, leaves it dead (and the page cache hid it: a read it
   * missed failed with EIO).
   */
  async connected(volumeId: string, socket: string): Promise<boolean> {
    const procs = await findProcesses(socket);
    const nbdfuse = procs.find((p) => p.argv.some((a) => a.endsWith('nbdfuse')));
    const engine = procs.find((p) => p.argv.includes('serve'));
    if (nbdfuse === undefined || engine === undefined || nbdfuse.startedAt < engine.startedAt) return false;
    return (await this.find(volumeId)) !== undefined;
  }

  async detach(volumeId: string, socket: string, lazy = false): Promise<void> {
    const dir = this.fuseDir(volumeId);
    // With autoclear, a loop device still held by a lazily unmounted filesystem goes away by
    // itself once that filesystem lets go; -d only fails when there is no such device.
    const dev = await this.find(volumeId);
    if (dev) await run('losetup', ['-d', dev], { okCodes: [0, 1] });
    if (lazy) {
      if (await mountAt(dir)) await run('umount', ['-l', dir], { okCodes: [0, 32] });
    } else {
      for (let i = 0; i < 100 && (await this.find(volumeId)); i++) await new Promise((r) => setTimeout(r, 50));
      // The loop driver lets go of its backing file asynchronously: retry the unmount while busy.
      for (let i = 0; (await mountAt(dir)) && i < 100; i++) {
        await run('fusermount3', ['-u', dir], { okCodes: [0, 1] });
        if (await mountAt(dir)) await new Promise((r) => setTimeout(r, 100));
      }
      if (await mountAt(dir)) await run('umount', ['-l', dir], { okCodes: [0, 32] });
    }
    for (const p of await findProcesses(socket)) {
      if (p.argv.some((a) => a.endsWith('nbdfuse')) && !(await waitExit(p.pid, lazy ? 2000 : 10_000))) process.kill(p.pid, 'SIGKILL');
    }
  }
}
