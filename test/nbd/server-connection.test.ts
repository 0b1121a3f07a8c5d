// Behaviours of one server connection that only a byte-level peer can provoke: EXPORT_NAME with
// and without NO_ZEROES, unknown options, broken framing, a client vanishing mid-payload, DISC
// with requests in flight, replies out of order, and the in-flight limits (requests and bytes)
// that pause reading.

import { join } from 'node:path';
import { afterEach, beforeEach, describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import type { BlockDevice, WriteOptions } from '../../src/block/block-device.js';
import { FilterDevice } from '../../src/block/filter-device.js';
import { MemoryDevice } from '../../src/block/memory-device.js';
import { IoError } from '../../src/block/errors.js';
import { NbdServer } from '../../src/nbd/index.js';
import { patternBytes } from './helpers.js';
import { tempDir } from '../support/temp-dir.js';
import { RawPeer, option, request, u32 } from './raw-client.js';

const SIZE = 1024 * 1024;

/**
 * A memory device whose reads (and, with gatedWrites, writes) wait until the test releases them,
 * counting concurrency.
 */
class GatedDevice extends FilterDevice {
  gated = false;
  gatedWrites = false;
  running = 0;
  maxRunning = 0;
  private readonly waiting: Array<() => void> = [];
  constructor() {
    super(new MemoryDevice(SIZE, { blockSize: 512 }));
  }
  override async read(offset: number, length: number): Promise<Buffer> {
    this.running++;
    this.maxRunning = Math.max(this.maxRunning, this.running);
    if (this.gated) await new Promise<void>((resolve) => this.waiting.push(resolve));
    this.running--;
    return super.read(offset, length);
  }
  /** Releases the read that arrived `index`-th among those still waiting. */
  release(index: number): void {
    const [r] = this.waiting.splice(index, 1);
    r?.();
  }
  get waitingCount(): number {
    return this.waiting.length;
  }
  override async write(offset: number, data: Uint8Array, options?: WriteOptions): Promise<void> {
    if (this.gatedWrites) await new Promise<void>((resolve) => this.waiting.push(resolve));
    return super.write(offset, data, options);
  }
}

async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (cond()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  assert.fail(`timed out waiting for ${what}`);
}

describe('NBD server connection', () => {
  let dir: string;
  let sock: string;
  let device: GatedDevice;
  let server: NbdServer;

  beforeEach(async (t) => {
    // A beforeEach hook runs with its test's context: the dir goes when the test ends.
    dir = tempDir(t as TestContext, 'nbd-conn');
    sock = join(dir, 'nbd.sock');
    device = new GatedDevice();
    await device.inner.write(0, patternBytes(SIZE, 21));
    server = new NbdServer({ exports: [{ name: 'x', device }], limits: { maxInFlight: 4 } });
    await server.listen({ socket: sock });
  });

  afterEach(async () => {
    await server.close();
  });

  test('EXPORT_NAME answers size and flags, with 124 zero bytes unless NO_ZEROES was agreed', async () => {
    for (const [flags, total] of [[1, 134], [3, 10]] as const) {
      const p = await RawPeer.connect(sock);
      await p.read(18);
      p.send(u32(flags), option(1, Buffer.from('x')));
      const reply = await p.read(total);
      assert.equal(Number(reply.readBigUInt64BE(0)), SIZE);
      assert.equal(reply.readUInt16BE(8) & 1, 1, 'HAS_FLAGS');
      assert.ok(reply.subarray(10).every((b) => b === 0));
      p.send(request(0, 7n, 512, 512));
      assert.deepEqual(await p.simpleReply(), { error: 0, cookie: 7n });
      assert.deepEqual(await p.read(512), patternBytes(1024, 21).subarray(512));
      p.socket.destroy();
    }
  });

  test('an unknown option gets ERR_UNSUP and haggling continues to GO', async () => {
    const p = await RawPeer.connect(sock);
    await p.read(18);
    p.send(u32(3), option(99, Buffer.from('whatever')));
    const h = await p.read(20);
    assert.equal(h.readUInt32BE(8), 99);
    assert.equal(h.readUInt32BE(12), 0x80000001);
    await p.read(h.readUInt32BE(16));
    p.send(option(7, Buffer.concat([u32(1), Buffer.from('x'), Buffer.from([0, 0])])));
    const info = await p.read(20);
    assert.equal(info.readUInt32BE(12), 3, 'NBD_REP_INFO');
    p.socket.destroy();
  });

  test('EXPORT_NAME of an unknown export and a bad option magic end only that connection', async () => {
    const good = await RawPeer.connect(sock);
    assert.equal(await good.go('x'), SIZE);
    const unknown = await RawPeer.connect(sock);
    await unknown.read(18);
    unknown.send(u32(3), option(1, Buffer.from('nope')));
    await unknown.closed;
    const badMagic = await RawPeer.connect(sock);
    await badMagic.read(18);
    badMagic.send(u32(3), Buffer.alloc(16, 0x41));
    await badMagic.closed;
    good.send(request(0, 1n, 0, 512));
    assert.equal((await good.simpleReply()).error, 0);
    good.socket.destroy();
  });

  test('a bad request magic closes that connection while another keeps being served', async () => {
    const a = await RawPeer.connect(sock);
    const b = await RawPeer.connect(sock);
    await a.go('x');
    await b.go('x');
    a.send(request(0, 1n, 0, 512, 0, 0xdeadbeef));
    await a.closed;
    b.send(request(0, 2n, 4096, 512));
    assert.deepEqual(await b.simpleReply(), { error: 0, cookie: 2n });
    assert.deepEqual(await b.read(512), patternBytes(4608, 21).subarray(4096));
    b.socket.destroy();
  });

  test('a client that vanishes in the middle of a WRITE payload leaves the export untouched', async () => {
    const p = await RawPeer.connect(sock);
    await p.go('x');
    p.send(request(1, 1n, 8192, 4096), Buffer.alloc(2000, 0xff));
    await new Promise((r) => setTimeout(r, 50));
    p.socket.destroy();
    await until(() => server.connectionCount === 0, 'the connection to go away');
    assert.deepEqual(await device.inner.read(0, SIZE), patternBytes(SIZE, 21));
  });

  test('replies leave in completion order, and DISC waits for requests in flight', async () => {
    device.gated = true;
    const p = await RawPeer.connect(sock);
    await p.go('x');
    p.send(request(0, 1n, 0, 512), request(0, 2n, 512, 512), request(2, 3n, 0, 0));
    await until(() => device.waitingCount === 2, 'both reads to reach the device');
    device.release(1);
    assert.deepEqual(await p.simpleReply(), { error: 0, cookie: 2n }, 'the second read answers first');
    await p.read(512);
    assert.equal(p.pending, 0);
    device.release(0);
    assert.deepEqual(await p.simpleReply(), { error: 0, cookie: 1n });
    await p.read(512);
    await p.closed;
  });

  test('reading pauses at the in-flight limit and resumes as requests complete', async () => {
    device.gated = true;
    const p = await RawPeer.connect(sock);
    await p.go('x');
    for (let i = 0; i < 20; i++) p.send(request(0, BigInt(i), i * 512, 512));
    await until(() => device.waitingCount === 4, 'four reads in flight');
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(device.waitingCount, 4, 'no fifth request is started while four are in flight');
    for (let done = 0; done < 20; done++) {
      await until(() => device.waitingCount > 0, 'a read to release');
      device.release(0);
      await p.simpleReply();
      await p.read(512);
    }
    assert.equal(device.maxRunning, 4);
    p.socket.destroy();
  });

  test('a READ that would pass the in-flight byte budget waits for earlier ones, and one larger than the budget runs alone', async () => {
    const budgetSock = join(dir, 'budget.sock');
    const budgeted = new NbdServer({ exports: [{ name: 'x', device }], limits: { maxInFlightBytes: 64 * 1024 } });
    await budgeted.listen({ socket: budgetSock });
    let p: RawPeer | undefined;
    try {
      device.gated = true;
      p = await RawPeer.connect(budgetSock);
      await p.go('x');
      p.send(request(0, 1n, 0, 24 * 1024), request(0, 2n, 0, 24 * 1024), request(0, 3n, 0, 24 * 1024));
      await until(() => device.waitingCount === 2, 'two reads in flight');
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(device.waitingCount, 2, 'a third 24 KiB READ would hold 72 KiB, more than the 64 KiB budget');
      device.release(0);
      await until(() => device.waitingCount === 2, 'the third read to start once the first finished');
      device.release(0);
      device.release(0);
      for (let i = 0; i < 3; i++) {
        await p.simpleReply();
        await p.read(24 * 1024);
      }
      p.send(request(0, 4n, 0, 128 * 1024), request(0, 5n, 0, 512));
      await until(() => device.waitingCount === 1, 'the 128 KiB read to start alone');
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(device.waitingCount, 1, 'nothing joins a request that alone passes the budget');
      device.release(0);
      assert.deepEqual(await p.simpleReply(), { error: 0, cookie: 4n });
      await p.read(128 * 1024);
      await until(() => device.waitingCount === 1, 'the small read to start after it');
      device.release(0);
      assert.deepEqual(await p.simpleReply(), { error: 0, cookie: 5n });
      await p.read(512);
      assert.equal(device.maxRunning, 2);
    } finally {
      // A failed assertion must leave no read gated and no peer open for close to wait on.
      p?.socket.destroy();
      device.gated = false;
      while (device.waitingCount > 0) device.release(0);
      await budgeted.close();
    }
  });

  test('WRITE payloads in flight are held to the byte budget: a WRITE that would pass it waits for earlier ones', async () => {
    const budgetSock = join(dir, 'budget-w.sock');
    const budgeted = new NbdServer({ exports: [{ name: 'x', device }], limits: { maxInFlightBytes: 64 * 1024 } });
    await budgeted.listen({ socket: budgetSock });
    let p: RawPeer | undefined;
    try {
      device.gatedWrites = true;
      p = await RawPeer.connect(budgetSock);
      await p.go('x');
      const writes = Array.from({ length: 6 }, (_, i) => [request(1, BigInt(i), i * 24 * 1024, 24 * 1024), Buffer.alloc(24 * 1024, i + 1)]).flat();
      p.send(...writes);
      await until(() => device.waitingCount === 2, 'two writes in flight');
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(device.waitingCount, 2, 'a third 24 KiB WRITE would hold 72 KiB, more than the 64 KiB budget');
      for (let i = 0; i < 6; i++) {
        await until(() => device.waitingCount > 0, 'a write to release');
        assert.ok(device.waitingCount <= 2, `at most two writes in flight, found ${device.waitingCount}`);
        device.release(0);
        assert.equal((await p.simpleReply()).error, 0);
      }
      for (let i = 0; i < 6; i++) assert.deepEqual(await device.inner.read(i * 24 * 1024, 24 * 1024), Buffer.alloc(24 * 1024, i + 1));
    } finally {
      p?.socket.destroy();
      device.gatedWrites = false;
      while (device.waitingCount > 0) device.release(0);
      await budgeted.close();
    }
  });

  test('server close of a connection paused at the in-flight limit ends as soon as the client has its replies', async () => {
    const logs: string[] = [];
    const pausedSock = join(dir, 'paused.sock');
    const paused = new NbdServer({ exports: [{ name: 'x', device }], limits: { maxInFlight: 4 }, log: (m) => logs.push(m) });
    await paused.listen({ socket: pausedSock });
    let closing: Promise<void> | undefined;
    let p: RawPeer | undefined;
    try {
      device.gated = true;
      p = await RawPeer.connect(pausedSock);
      await p.go('x');
      for (let i = 0; i < 8; i++) p.send(request(0, BigInt(i), i * 512, 512));
      await until(() => device.waitingCount === 4, 'four reads in flight, reading paused');
      // Sent while reading is paused: these wait in the socket, unread, in front of the FIN.
      p.send(...Array.from({ length: 4 }, (_, i) => request(0, BigInt(100 + i), 0, 512)));
      await new Promise((r) => setTimeout(r, 50));
      closing = paused.close();
      while (device.waitingCount > 0) device.release(0);
      for (let i = 0; i < 4; i++) {
        assert.equal((await p.simpleReply()).error, 0);
        await p.read(512);
      }
      await closing;
      await p.closed;
      // The hang-up must see the client's FIN: a server that does not is left to cut the client
      // off after closeTimeoutMs, and says so.
      assert.deepEqual(logs, [], 'the connection ended on the client\'s FIN, not cut off');
    } finally {
      p?.socket.destroy();
      device.gated = false;
      while (device.waitingCount > 0) device.release(0);
      await (closing ?? paused.close());
    }
  });

  test('server close answers requests in flight before it hangs up', async () => {
    device.gated = true;
    const p = await RawPeer.connect(sock);
    await p.go('x');
    p.send(request(0, 9n, 0, 512));
    await until(() => device.waitingCount === 1, 'the read to reach the device');
    const closing = server.close();
    device.release(0);
    assert.deepEqual(await p.simpleReply(), { error: 0, cookie: 9n });
    await p.read(512);
    await p.closed;
    await closing;
  });
});

/**
 * A device over one buffer with the synchronous fast paths of BlockDevice, each of which can be
 * told to decline or to fail, counting what went which way.
 */
class NowDevice implements BlockDevice {
  readonly size = SIZE;
  readonly blockSize = 512;
  readonly readOnly = false;
  readonly bytes = Buffer.alloc(SIZE);
  nowMode: 'do' | 'decline' | 'fail' = 'do';
  readonly calls = { readNow: 0, writeNow: 0, read: 0, write: 0 };
  readNow(offset: number, out: Buffer): boolean {
    this.calls.readNow++;
    if (this.nowMode === 'fail') throw new IoError(`read at ${offset} failed`);
    if (this.nowMode === 'decline') return false;
    this.bytes.copy(out, 0, offset, offset + out.length);
    return true;
  }
  writeNow(offset: number, parts: readonly Uint8Array[]): boolean {
    this.calls.writeNow++;
    if (this.nowMode === 'fail') throw new IoError(`write at ${offset} failed`);
    if (this.nowMode === 'decline') return false;
    this.bytes.set(Buffer.concat(parts), offset);
    return true;
  }
  async read(offset: number, length: number): Promise<Buffer> {
    this.calls.read++;
    return Buffer.from(this.bytes.subarray(offset, offset + length));
  }
  async write(offset: number, data: Uint8Array): Promise<void> {
    this.calls.write++;
    this.bytes.set(data, offset);
  }
  async flush(): Promise<void> {}
  async discard(): Promise<void> {}
  async writeZeroes(offset: number, length: number): Promise<void> {
    this.bytes.fill(0, offset, offset + length);
  }
  async close(): Promise<void> {}
}

describe('NBD server: synchronous fast paths (BlockDevice.readNow/writeNow)', () => {
  let dir: string;
  let sock: string;
  let device: NowDevice;
  let server: NbdServer;

  beforeEach(async (t) => {
    // A beforeEach hook runs with its test's context: the dir goes when the test ends.
    dir = tempDir(t as TestContext, 'nbd-now');
    sock = join(dir, 'nbd.sock');
    device = new NowDevice();
    server = new NbdServer({ exports: [{ name: 'x', device }] });
    await server.listen({ socket: sock });
  });

  afterEach(async () => {
    await server.close();
  });

  test('a WRITE the device does at once is answered without the asynchronous write, and reads back', async () => {
    const p = await RawPeer.connect(sock);
    await p.go('x');
    p.send(request(1, 1n, 4096, 4096), Buffer.alloc(4096, 0x5a));
    assert.deepEqual(await p.simpleReply(), { error: 0, cookie: 1n });
    p.send(request(0, 2n, 4096, 4096));
    assert.deepEqual(await p.simpleReply(), { error: 0, cookie: 2n });
    assert.deepEqual(await p.read(4096), Buffer.alloc(4096, 0x5a));
    assert.deepEqual(device.calls, { readNow: 1, writeNow: 1, read: 0, write: 0 });
    p.socket.destroy();
  });

  test('a declined request takes the asynchronous path; FUA writes and large reads never try the fast one', async () => {
    device.nowMode = 'decline';
    const p = await RawPeer.connect(sock);
    await p.go('x');
    p.send(request(1, 1n, 0, 512), Buffer.alloc(512, 1));
    assert.deepEqual(await p.simpleReply(), { error: 0, cookie: 1n });
    p.send(request(0, 2n, 0, 512));
    assert.deepEqual(await p.simpleReply(), { error: 0, cookie: 2n });
    assert.deepEqual(await p.read(512), Buffer.alloc(512, 1));
    assert.deepEqual(device.calls, { readNow: 1, writeNow: 1, read: 1, write: 1 });
    device.nowMode = 'do';
    p.send(request(1, 3n, 0, 512, 1 /* FUA */), Buffer.alloc(512, 2));
    assert.deepEqual(await p.simpleReply(), { error: 0, cookie: 3n });
    p.send(request(0, 4n, 0, 64 * 1024));
    assert.deepEqual(await p.simpleReply(), { error: 0, cookie: 4n });
    await p.read(64 * 1024);
    assert.deepEqual(device.calls, { readNow: 1, writeNow: 1, read: 2, write: 2 });
    p.socket.destroy();
  });

  test('a fast path that fails is answered once, with EIO, and not retried asynchronously', async () => {
    device.nowMode = 'fail';
    const p = await RawPeer.connect(sock);
    await p.go('x');
    p.send(request(1, 1n, 0, 512), Buffer.alloc(512, 3), request(0, 2n, 0, 512));
    assert.deepEqual(await p.simpleReply(), { error: 5, cookie: 1n });
    assert.deepEqual(await p.simpleReply(), { error: 5, cookie: 2n });
    device.nowMode = 'do';
    p.send(request(0, 3n, 0, 512));
    assert.deepEqual(await p.simpleReply(), { error: 0, cookie: 3n }, 'no stray reply before this one');
    assert.deepEqual(await p.read(512), Buffer.alloc(512, 0));
    assert.deepEqual(device.calls, { readNow: 2, writeNow: 1, read: 0, write: 0 });
    p.socket.destroy();
  });
});

test('DISC right after a WRITE and a READ answered by the fast paths still sends both replies first', async (t) => {
  const dir = tempDir(t as TestContext, 'nbd-now-disc');
  const sock = join(dir, 'nbd.sock');
  const device = new NowDevice();
  const server = new NbdServer({ exports: [{ name: 'x', device }] });
  await server.listen({ socket: sock });
  try {
    const p = await RawPeer.connect(sock);
    await p.go('x');
    p.send(request(1, 1n, 0, 512), Buffer.alloc(512, 0x6b), request(0, 2n, 0, 512), request(2, 3n, 0, 0));
    assert.deepEqual(await p.simpleReply(), { error: 0, cookie: 1n });
    assert.deepEqual(await p.simpleReply(), { error: 0, cookie: 2n });
    assert.deepEqual(await p.read(512), Buffer.alloc(512, 0x6b));
    await p.closed;
    assert.deepEqual(device.calls, { readNow: 1, writeNow: 1, read: 0, write: 0 });
  } finally {
    await server.close();
  }
});

/** Records the buffer of every write (its ArrayBuffer); rejects writes at offsets in `failAt`. */
class BufferRecordingDevice extends FilterDevice {
  readonly seen: Array<{ offset: number; buffer: ArrayBufferLike; bytes: Buffer }> = [];
  readonly failAt = new Set<number>();
  constructor() {
    super(new MemoryDevice(SIZE, { blockSize: 512 }));
  }
  override async write(offset: number, data: Uint8Array, options?: WriteOptions): Promise<void> {
    this.seen.push({ offset, buffer: data.buffer, bytes: Buffer.from(data) });
    if (this.failAt.has(offset)) throw new IoError(`test: write at ${offset} fails`);
    return super.write(offset, data, options);
  }
}

test('WRITE payloads land in reused buffers: a resolved write gives its buffer to the next, a rejected one never', async (t) => {
  const dir = tempDir(t as TestContext, 'nbd-payloads');
  const sock = join(dir, 'nbd.sock');
  const device = new BufferRecordingDevice();
  device.failAt.add(64 * 1024);
  const server = new NbdServer({ exports: [{ name: 'x', device }] });
  await server.listen({ socket: sock });
  try {
    const p = await RawPeer.connect(sock);
    await p.go('x');
    // One at a time, each 64 KiB (past the fast path), the client's bytes split unevenly.
    for (let i = 0; i < 6; i++) {
      const payload = patternBytes(64 * 1024, 40 + i);
      const wire = Buffer.concat([request(1, BigInt(i), i * 64 * 1024, payload.length), payload]);
      for (let at = 0; at < wire.length; at += 9001) p.send(wire.subarray(at, at + 9001));
      assert.equal((await p.simpleReply()).error, i === 1 ? 5 : 0);
    }
    const [first, failed, ...rest] = device.seen;
    assert.equal(failed!.buffer, first!.buffer, "the first write's buffer, given back, serves the second");
    assert.ok(rest.every((w) => w.buffer !== failed!.buffer), "the failed write's buffer is never handed out again");
    assert.ok(rest.slice(1).every((w) => w.buffer === rest[0]!.buffer), 'the next buffer serves every write after it');
    device.seen.forEach((w, i) => assert.deepEqual(w.bytes, patternBytes(64 * 1024, 40 + i), `write ${i} got its own bytes`));
    p.send(request(0, 9n, 0, 6 * 64 * 1024));
    assert.equal((await p.simpleReply()).error, 0);
    const back = await p.read(6 * 64 * 1024);
    for (const i of [0, 2, 3, 4, 5]) assert.deepEqual(back.subarray(i * 65536, (i + 1) * 65536), patternBytes(65536, 40 + i));
    p.socket.destroy();
  } finally {
    await server.close();
  }
});
