// Fixtures of the NBD client tests: real servers (nbdkit, qemu-nbd) as child processes on a unix
// socket or a loopback TCP port, and a random-I/O check of a client device against a shadow copy.

import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import type { BlockDevice } from '../../src/block/block-device.js';
import { TOOL_ENV } from './helpers.js';

export interface ServerProcess {
  child: ChildProcess;
  stderr: () => string;
  /** SIGTERM (or `signal`), then waits for the exit. */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/** A TCP port on 127.0.0.1 nothing listens on right now. */
export async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

/**
 * Starts `nbdkit --foreground ARGS` and resolves once it accepts connections (its --pidfile is
 * written then). `where` is a unix socket path or a TCP port on 127.0.0.1.
 */
export async function startNbdkit(dir: string, where: string | number, args: string[]): Promise<ServerProcess> {
  const pidfile = join(dir, `nbdkit-${Math.random().toString(36).slice(2)}.pid`);
  const listen = typeof where === 'string' ? ['--unix', where] : ['--ipaddr', '127.0.0.1', '--port', String(where)];
  return startServer('nbdkit', ['--foreground', '--exit-with-parent', '--pidfile', pidfile, ...listen, ...args], () => existsSync(pidfile));
}

/** Starts qemu-nbd on `file` (raw) at a unix socket; resolves once the socket exists. */
export async function startQemuNbd(socket: string, file: string, extra: string[] = []): Promise<ServerProcess> {
  return startServer('qemu-nbd', ['--socket', socket, '-f', 'raw', '--persistent', '--shared=4', '--cache=writeback', ...extra, file], () => existsSync(socket));
}

async function startServer(cmd: string, args: string[], ready: () => boolean): Promise<ServerProcess> {
  const child = spawn(cmd, args, { env: TOOL_ENV, stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  for (let i = 0; !ready(); i++) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${cmd} exited before it listened: ${err}`);
    if (i > 400) throw new Error(`${cmd} did not start within 20 s: ${err}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    child,
    stderr: () => err,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      // nbdkit waits for its clients to hang up before it exits on SIGTERM.
      const kill = setTimeout(() => child.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(kill);
    },
  };
}

/** A deterministic pseudo-random source (xorshift32), so a failing run can be repeated. */
export function random(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 0x100000000;
  };
}

/**
 * Rounds of `perRound` random writes and reads in flight together (never two on overlapping
 * ranges in one round), checked against a shadow copy of the device; then the whole device is
 * read back and compared.
 */
export async function randomIoAgainstShadow(dev: BlockDevice, options: { rounds: number; perRound: number; maxBlocks: number; seed: number }): Promise<void> {
  const rnd = random(options.seed);
  const unit = dev.blockSize;
  const shadow = Buffer.alloc(dev.size);
  const blocks = dev.size / unit;
  for (let round = 0; round < options.rounds; round++) {
    const ops: Array<Promise<void>> = [];
    const taken: Array<[number, number]> = [];
    for (let i = 0; i < options.perRound; i++) {
      const n = 1 + Math.floor(rnd() * options.maxBlocks);
      const start = Math.floor(rnd() * (blocks - n));
      const a = start * unit;
      const b = a + n * unit;
      if (taken.some(([x, y]) => a < y && x < b)) continue;
      taken.push([a, b]);
      if (rnd() < 0.5) {
        const data = Buffer.allocUnsafe(b - a);
        for (let j = 0; j < data.length; j += 4) data.writeUInt32LE((rnd() * 0x100000000) >>> 0, j);
        data.copy(shadow, a);
        ops.push(dev.write(a, data, { fua: rnd() < 0.1 }));
      } else {
        const expected = Buffer.from(shadow.subarray(a, b));
        ops.push(dev.read(a, b - a).then((got) => {
          if (!got.equals(expected)) assert.fail(`read [${a}, ${b}) differs from the shadow`);
        }));
      }
    }
    await Promise.all(ops);
  }
  assert.ok((await dev.read(0, dev.size)).equals(shadow), 'the whole device equals the shadow');
}
