// Kernel attach mode: the Linux NBD client (`nbd-client -unix`) binds a free /dev/nbdX to the
// volume's engine socket. It runs in ioctl mode with -persist, so the client process stays and
// reconnects when a restarted engine listens again, and with a dead-connection timeout so I/O
// fails (rather than hangs forever) when the engine never comes back.

import { promises as fs } from 'node:fs';
import type { Attacher } from './attach.js';
import { CsiError } from './errors.js';
import { run } from './exec.js';
import { findProcesses, waitExit } from '../engine/processes.js';
import { describeError, trace } from '../common/trace.js';

/** Seconds a request may wait on a dead connection before the kernel fails it. */
const deadConnectionTimeout = 60;

export class KernelAttacher implements Attacher {
  readonly mode = 'kernel' as const;
  /** Serialises attach calls: two must not pick the same free /dev/nbdX. */
  private attaching: Promise<unknown> = Promise.resolve();

  async attach(volumeId: string, socket: string): Promise<string> {
    const next = this.attaching.then(() => this.attachNow(volumeId, socket));
    this.attaching = next.catch(() => undefined);
    return next;
  }

  private async attachNow(volumeId: string, socket: string): Promise<string> {
    const existing = await this.find(volumeId, socket);
    if (existing) return existing;
    // The module may be built in, or loaded by the node already; freeDevice says if it is missing.
    await run('modprobe', ['nbd'], { okCodes: [0, 1] }).catch((err: unknown) => trace('csi', 'debug', () => `modprobe nbd: ${describeError(err)}`));
    const device = await this.freeDevice();
    await run('nbd-client', ['-unix', socket, device, '-N', volumeId, '-b', '4096', '-t', String(deadConnectionTimeout), '-nonetlink', '-persist']);
    // In ioctl mode the client forks; the device is usable once the kernel reports its size.
    for (let i = 0; i < 200; i++) {
      const size = Number((await fs.readFile(`/sys/block/${device.slice(5)}/size`, 'utf8')).trim());
      if (size > 0) return device;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new CsiError('INTERNAL', `nbd-client: expected ${device} to come up with a size, it stayed empty`);
  }

  /** The first /dev/nbdX with no client (no pid file) and no size. */
  private async freeDevice(): Promise<string> {
    const names = (await fs.readdir('/sys/block')).filter((n) => /^nbd\d+$/.test(n));
    names.sort((a, b) => Number(a.slice(3)) - Number(b.slice(3)));
    for (const name of names) {
      const busy = await fs.access(`/sys/block/${name}/pid`).then(() => true, () => false);
      const size = Number((await fs.readFile(`/sys/block/${name}/size`, 'utf8')).trim());
      if (!busy && size === 0) return `/dev/${name}`;
    }
    throw new CsiError('RESOURCE_EXHAUSTED', `kernel attach: expected a free /dev/nbdX, all ${names.length} are in use`);
  }

  async resize(device: string, bytes: number): Promise<void> {
    // The kernel learns an NBD export's size at connect only; NBD_SET_SIZE (_IO(0xab, 2)) changes
    // it on a live device, and the kernel tells the filesystem layer (set_capacity_and_notify).
    // Node.js cannot issue an ioctl and no Debian tool sets an nbd device's size, so perl, part of
    // every Debian system (perl-base is Essential), makes the one call.
    const script = 'open(my $f, "<", $ARGV[0]) or die "$ARGV[0]: $!\\n"; ioctl($f, 0xab02, $ARGV[1] + 0) or die "NBD_SET_SIZE: $!\\n"';
    await run('perl', ['-e', script, device, String(bytes)]);
    const sectors = Number((await fs.readFile(`/sys/block/${device.slice(5)}/size`, 'utf8')).trim());
    if (sectors * 512 !== bytes) {
      throw new CsiError('INTERNAL', `nbd resize: expected ${device} to hold ${bytes} bytes, the kernel reports ${sectors * 512}`);
    }
  }

  async find(_volumeId: string, socket: string): Promise<string | undefined> {
    for (const p of await findProcesses(socket)) {
      if (!p.argv.some((a) => a.endsWith('nbd-client'))) continue;
      const dev = p.argv.find((a) => /^\/dev\/nbd\d+$/.test(a));
      if (dev) return dev;
    }
    return undefined;
  }

  async connected(volumeId: string, socket: string): Promise<boolean> {
    const dev = await this.find(volumeId, socket);
    if (!dev) return false;
    return fs.access(`/sys/block/${dev.slice(5)}/pid`).then(() => true, () => false);
  }

  async detach(volumeId: string, socket: string, _lazy = false): Promise<void> {
    const dev = await this.find(volumeId, socket);
    if (!dev) return;
    await run('nbd-client', ['-d', dev], { okCodes: [0, 1] });
    for (const p of await findProcesses(socket)) {
      if (p.argv.some((a) => a.endsWith('nbd-client'))) {
        if (!(await waitExit(p.pid, 10_000))) process.kill(p.pid, 'SIGKILL');
      }
    }
  }
}
