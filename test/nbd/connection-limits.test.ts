// What one connection may hold, seen from a byte-level peer over a real unix socket: option data
// too long to read is answered NBD_REP_ERR_TOO_BIG and dropped as it arrives, a client that
// leaves replies unread past the cap is dropped with a log line, a hang-up does not wait forever
// on a client that never reads, limits that could drop honest clients are refused, and the
// payload buffers a connection holds stay within its in-flight byte budget.

import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryDevice } from '../../src/block/memory-device.js';
import { SizeClassPool } from '../../src/block/size-class-pool.js';
import { CAP_SLACK, DEFAULT_LIMITS, NbdConnection } from '../../src/nbd/connection.js';
import { ExportTable, NbdExport } from '../../src/nbd/export.js';
import { NbdServer, isNbdError, type ConnectionLimits } from '../../src/nbd/index.js';
import { patternBytes } from './helpers.js';
import { tempDir } from '../support/temp-dir.js';
import { RawPeer, option, request, u32 } from './raw-client.js';

const SIZE = 16 * 1024 * 1024;
const KiB = 1024;
/** The export's largest READ/WRITE, small so the smallest caps checkLimits allows are small too. */
const MAX_PAYLOAD = 64 * KiB;
/** The smallest cap checkLimits allows here: one WRITE of MAX_PAYLOAD with its header, and the slack. */
const MIN_CAP = MAX_PAYLOAD + 28 + CAP_SLACK;

async function until(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) assert.fail(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** `p`, or a failure naming `what` if it has not settled within `ms`. */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms)));
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** The name/info-count data of NBD_OPT_INFO and NBD_OPT_GO. */
function infoData(name: string): Buffer {
  return Buffer.concat([u32(Buffer.byteLength(name)), Buffer.from(name), Buffer.from([0, 0])]);
}

/** Reads option replies up to and including the final one; returns [type, body] of each. */
async function optionReplies(p: RawPeer): Promise<Array<[number, Buffer]>> {
  const out: Array<[number, Buffer]> = [];
  for (;;) {
    const h = await p.read(20);
    const type = h.readUInt32BE(12);
    out.push([type, await p.read(h.readUInt32BE(16))]);
    if (type === 1 || type >= 0x80000000) return out;
  }
}

describe('NBD connection limits', () => {
  let dir: string;
  let sock: string;
  let server: NbdServer;
  let logs: string[];
  /** Every peer of the test, destroyed before the server closes: a peer that reads nothing would hold close up. */
  let peers: RawPeer[];

  async function connect(): Promise<RawPeer> {
    const p = await RawPeer.connect(sock);
    peers.push(p);
    return p;
  }

  async function serve(limits: Partial<ConnectionLimits>): Promise<void> {
    const device = new MemoryDevice(SIZE, { blockSize: 512 });
    await device.write(0, patternBytes(SIZE, 33));
    server = new NbdServer({ exports: [{ name: 'x', device, maxPayload: MAX_PAYLOAD }], limits, log: (m) => logs.push(m) });
    await server.listen({ socket: sock });
  }

  beforeEach((t) => {
    // A beforeEach hook runs with its test's context: the dir goes when the test ends.
    dir = tempDir(t as TestContext, 'nbd-limits');
    sock = join(dir, 'nbd.sock');
    logs = [];
    peers = [];
  });

  afterEach(async () => {
    for (const p of peers) p.socket.destroy();
    await server?.close();
  });

  test('an option longer than the server reads gets NBD_REP_ERR_TOO_BIG, its data is dropped as it comes, and haggling goes on to GO', async () => {
    // With the input cap at its smallest, 4 MiB of option data buffered whole would drop the client.
    await serve({ maxInputBytes: MIN_CAP });
    const p = await connect();
    await p.read(18);
    const length = 4 * 1024 * KiB;
    const header = option(6, Buffer.alloc(0));
    header.writeUInt32BE(length, 12);
    p.send(u32(3), header);
    for (let sent = 0; sent < length; sent += 256 * KiB) {
      await new Promise<void>((resolve) => p.socket.write(Buffer.alloc(256 * KiB, 0x61), () => resolve()));
    }
    const [type, body] = (await within(optionReplies(p), 5000, 'a reply to the oversized option'))[0]!;
    assert.equal(type, 0x80000009, 'NBD_REP_ERR_TOO_BIG');
    assert.equal(body.toString(), `option 6 carries ${length} bytes of data, more than the 65536 this server reads`);
    p.send(option(7, infoData('x')));
    const go = await optionReplies(p);
    assert.equal(go.at(-1)![0], 1, 'GO acknowledged');
    p.send(request(0, 1n, 512, 512));
    assert.deepEqual(await p.simpleReply(), { error: 0, cookie: 1n });
    assert.deepEqual(await p.read(512), patternBytes(1024, 33).subarray(512));
    assert.deepEqual(logs, []);
    p.socket.destroy();
  });

  test('an option claiming 4 GiB of data is read through without being held, and the connection stays', async () => {
    await serve({ maxInputBytes: MIN_CAP });
    const p = await connect();
    await p.read(18);
    const header = option(6, Buffer.alloc(0));
    header.writeUInt32BE(0xffffffff, 12);
    p.send(u32(3), header);
    // 32 MiB gone into a unix socket whose buffers hold a few hundred KiB: the server read them.
    for (let sent = 0; sent < 32 * 1024 * KiB; sent += 256 * KiB) {
      await new Promise<void>((resolve) => p.socket.write(Buffer.alloc(256 * KiB), () => resolve()));
    }
    assert.equal(server.connectionCount, 1);
    assert.deepEqual(logs, []);
    p.socket.destroy();
  });

  test('NBD_OPT_EXPORT_NAME longer than the server reads ends that connection, having no error reply', async () => {
    await serve({});
    const p = await connect();
    await p.read(18);
    p.send(u32(3), option(1, Buffer.alloc(70 * KiB, 0x61)));
    await within(p.closed, 5000, 'the server to end the connection');
    assert.equal(p.pending, 0, 'no reply at all');
    await until(() => logs.length > 0, 'a log line');
    assert.match(logs[0]!, /^handshake failed: NBD_OPT_EXPORT_NAME carries 71680 bytes, more than the 65536 accepted$/);
  });

  test('a client that leaves more replies unread than maxUnsentBytes is dropped with a log line, and others are still served', async () => {
    // The in-flight budget lets far more than the cap complete, as a deep queue would.
    await serve({ maxInFlightBytes: 8 * 1024 * KiB, maxUnsentBytes: MIN_CAP });
    const reader = await connect();
    await reader.go('x');
    const hog = await connect();
    await hog.go('x');
    hog.socket.pause();
    hog.send(...Array.from({ length: 256 }, (_, i) => request(0, BigInt(i), i * MAX_PAYLOAD, MAX_PAYLOAD)));
    await until(() => logs.length > 0, 'the hog to be dropped');
    assert.match(logs[0]!, new RegExp(`^dropping client: \\d+ reply bytes wait for it to read them, more than the ${MIN_CAP} one connection may hold$`));
    await until(() => server.connectionCount === 1, 'the hog connection to go away');
    reader.send(request(0, 7n, 4096, 4096));
    assert.deepEqual(await reader.simpleReply(), { error: 0, cookie: 7n });
    assert.deepEqual(await reader.read(4096), patternBytes(8192, 33).subarray(4096));
    reader.socket.destroy();
    hog.socket.destroy();
  });

  test('a client that sends DISC and never reads its last replies is cut off after closeTimeoutMs', async () => {
    // The in-flight budget takes all 8 MiB: the server reads as far as the DISC.
    await serve({ closeTimeoutMs: 200, maxInFlightBytes: 8 * 1024 * KiB });
    const p = await connect();
    await p.go('x');
    p.socket.pause();
    // 8 MiB of replies, more than the socket buffers take, then DISC in the same write.
    p.send(...Array.from({ length: 128 }, (_, i) => request(0, BigInt(i), i * MAX_PAYLOAD, MAX_PAYLOAD)), request(2, 999n, 0, 0));
    await until(() => server.connectionCount === 0, 'the connection to be cut off');
    assert.match(logs.join('\n'), /client took none of its last \d+ reply bytes in 200 ms after the hang-up, nor closed; cutting it off/);
    p.socket.destroy();
  });

  test('server close finishes while a client that never reads is connected, cutting it off after closeTimeoutMs', async () => {
    await serve({ closeTimeoutMs: 200 });
    const p = await connect();
    await p.go('x');
    p.socket.pause();
    p.send(...Array.from({ length: 1024 }, (_, i) => request(0, BigInt(i), (i % 256) * MAX_PAYLOAD, MAX_PAYLOAD)));
    await new Promise((r) => setTimeout(r, 100));
    await within(server.close(), 5000, 'server close to finish');
    assert.match(logs.join('\n'), /cutting it off/);
    p.socket.destroy();
  });

  test('limits that are not positive whole numbers, or caps smaller than one message and the slack, are refused', () => {
    const device = new MemoryDevice(SIZE, { blockSize: 512 });
    const make = (limits: Partial<ConnectionLimits>, maxPayload?: number): unknown =>
      new NbdServer({ exports: [{ name: 'x', device, ...(maxPayload === undefined ? {} : { maxPayload }) }], limits });
    assert.throws(() => make({ maxInFlight: 0 }), (e) => isNbdError(e, 'NBD_LIMITS') && e.message === 'limit maxInFlight: expected a positive whole number, found 0');
    assert.throws(() => make({ closeTimeoutMs: 1.5 }), /limit closeTimeoutMs: expected a positive whole number, found 1.5/);
    // The default maximum payload is 32 MiB: a 32 MiB cap leaves no room for its READ reply.
    assert.throws(() => make({ maxUnsentBytes: 32 * 1024 * KiB }), (e) => isNbdError(e, 'NBD_LIMITS') &&
      e.message === `limit maxUnsentBytes: expected at least ${32 * 1024 * KiB + 28 + CAP_SLACK} (one ${32 * 1024 * KiB + 28}-byte message and ${CAP_SLACK} of slack), found ${32 * 1024 * KiB}`);
    assert.throws(() => make({ maxInputBytes: MIN_CAP - 1 }, MAX_PAYLOAD), new RegExp(`limit maxInputBytes: expected at least ${MIN_CAP} \\(one 65564-byte message`));
    assert.doesNotThrow(() => make({ maxInputBytes: MIN_CAP, maxUnsentBytes: MIN_CAP }, MAX_PAYLOAD));
  });
});

describe('NBD connection input cap (a connection built with a cap below what NbdServer allows)', () => {
  let dir: string;
  let listener: Server;

  beforeEach((t) => {
    // A beforeEach hook runs with its test's context: the dir goes when the test ends.
    dir = tempDir(t as TestContext, 'nbd-input-cap');
  });

  afterEach(async () => {
    await new Promise((r) => listener.close(r));
  });

  test('a connection whose unparsed input passes maxInputBytes is dropped with a log line', async () => {
    // No client can reach the cap NbdServer enforces while backpressure works; this shows what
    // happens if one did: the connection goes, the process stays.
    const sock = join(dir, 'nbd.sock');
    const table = new ExportTable([new NbdExport({ name: 'x', device: new MemoryDevice(SIZE, { blockSize: 512 }) })]);
    const logs: string[] = [];
    const limits = { ...DEFAULT_LIMITS, maxInputBytes: 4096 };
    listener = createServer((s) => void new NbdConnection(s, table, limits, (m) => logs.push(m)).run());
    await new Promise<void>((r) => listener.listen(sock, r));
    const p = await RawPeer.connect(sock);
    try {
      await p.read(18);
      const header = option(6, Buffer.alloc(0));
      header.writeUInt32BE(60_000, 12);
      p.send(u32(3), header, Buffer.alloc(60_000));
      await within(p.closed, 5000, 'the server to drop the connection');
    } finally {
      p.socket.destroy();
    }
    assert.match(logs.join('\n'), /^dropping client: \d+ received bytes wait to be parsed, more than the 4096 one connection may hold$/m);
  });
});

/** A memory device with readInto (so the server reads large READs into pooled buffers) whose reads wait for the test. */
class GatedReadInto extends MemoryDevice {
  readonly waiting: Array<() => void> = [];
  async readInto(offset: number, out: Buffer): Promise<void> {
    await new Promise<void>((resolve) => this.waiting.push(resolve));
    out.set(await this.read(offset, out.length));
  }
}

/** WRITEs that wait until the test lets each go (a MemoryDevice has no writeNow: every one goes to write()). */
class GatedWrite extends MemoryDevice {
  readonly waiting: Array<() => void> = [];
  override async write(offset: number, data: Uint8Array): Promise<void> {
    await new Promise<void>((resolve) => this.waiting.push(resolve));
    await super.write(offset, data);
  }
}

/** The payload pool, counting the bytes it has handed out and not had back. */
class CountingPool extends SizeClassPool {
  held = 0;
  maxHeld = 0;
  override take(length: number): Buffer {
    this.held += length;
    this.maxHeld = Math.max(this.maxHeld, this.held);
    return super.take(length);
  }
  override give(b: Buffer): void {
    this.held -= b.length;
    super.give(b);
  }
}

describe('NBD connection payload budget (a connection given a pool the test counts)', () => {
  let dir: string;
  let listener: Server | undefined;

  beforeEach((t) => {
    // A beforeEach hook runs with its test's context: the dir goes when the test ends.
    dir = tempDir(t as TestContext, 'nbd-payload-budget');
  });

  afterEach(async () => {
    await new Promise((r) => (listener ? listener.close(r) : r(undefined)));
  });

  for (const weight of [1, 2]) {
    test(`WRITEs count against maxInFlightBytes at the export's write weight (${weight}): ${4 / weight} of 1 MiB in flight in a 4 MiB budget`, async () => {
      const MiB = 1024 * KiB;
      const device = new GatedWrite(SIZE, { blockSize: 512 });
      const table = new ExportTable([new NbdExport({ name: 'x', device, writeWeight: weight })]);
      const limits: ConnectionLimits = { ...DEFAULT_LIMITS, maxInFlightBytes: 4 * MiB };
      const sock = join(dir, 'nbd.sock');
      listener = createServer((s) => void new NbdConnection(s, table, limits, () => undefined, undefined, new SizeClassPool(limits.maxInFlightBytes)).run());
      await new Promise<void>((r) => listener!.listen(sock, r));
      const p = await RawPeer.connect(sock);
      try {
        await p.go('x');
        const writes = 6;
        for (let i = 0; i < writes; i++) p.send(request(1, BigInt(i), i * MiB, MiB), patternBytes(MiB, i));
        let most = 0;
        for (let i = 0; i < writes; i++) {
          await until(() => device.waiting.length > 0, `WRITE ${i} to start`);
          // Give any WRITE the budget still had room for time to arrive and start too.
          await new Promise((r) => setTimeout(r, 30));
          most = Math.max(most, device.waiting.length);
          device.waiting.shift()!();
          assert.deepEqual(await p.simpleReply(), { error: 0, cookie: BigInt(i) });
        }
        assert.equal(most, 4 / weight, `at most ${4 / weight} WRITEs of 1 MiB in flight at weight ${weight}`);
        assert.deepEqual(await device.read(5 * MiB, MiB), patternBytes(MiB, 5), 'every WRITE landed');
      } finally {
        p.socket.destroy();
        for (const release of device.waiting.splice(0)) release();
      }
    });
  }

  test('READ buffers in flight and replies not yet taken by the kernel stay within maxInFlightBytes; a READ larger than it runs alone; the pool keeps no more', async () => {
    const MiB = 1024 * KiB;
    const budget = 2 * MiB;
    const device = new GatedReadInto(SIZE, { blockSize: 512 });
    await device.write(0, patternBytes(SIZE, 41));
    const table = new ExportTable([new NbdExport({ name: 'x', device })]);
    const limits: ConnectionLimits = { ...DEFAULT_LIMITS, maxInFlightBytes: budget };
    // As payloadPool(limits) makes it, without the idle trim.
    const pool = new CountingPool(limits.maxInFlightBytes);
    const logs: string[] = [];
    const sock = join(dir, 'nbd.sock');
    listener = createServer((s) => void new NbdConnection(s, table, limits, (m) => logs.push(m), undefined, pool).run());
    await new Promise<void>((r) => listener!.listen(sock, r));
    const p = await RawPeer.connect(sock);
    try {
      await p.go('x');
      // Six 1 MiB READs (two fit the budget), then one of 3 MiB, more than all of it.
      const reads = [...Array.from({ length: 6 }, (_, i) => ({ offset: i * MiB, length: MiB })), { offset: 8 * MiB, length: 3 * MiB }];
      p.send(...reads.map((r, i) => request(0, BigInt(i), r.offset, r.length)));
      let maxSmallHeld = 0;
      for (let i = 0; i < reads.length; i++) {
        await until(() => device.waiting.length > 0, `READ ${i} to start`);
        // Give any READ the budget still had room for time to start too.
        await new Promise((r) => setTimeout(r, 20));
        if (i < 6) {
          assert.ok(device.waiting.length <= 2, `at most two 1 MiB READs in flight, found ${device.waiting.length}`);
          maxSmallHeld = Math.max(maxSmallHeld, pool.maxHeld);
        } else {
          assert.equal(device.waiting.length, 1, 'the 3 MiB READ runs alone');
          assert.equal(pool.held, 3 * MiB, 'it alone holds buffers');
        }
        device.waiting.shift()!();
        assert.deepEqual(await p.simpleReply(), { error: 0, cookie: BigInt(i) });
        assert.deepEqual(await p.read(reads[i]!.length), patternBytes(SIZE, 41).subarray(reads[i]!.offset, reads[i]!.offset + reads[i]!.length));
      }
      assert.ok(maxSmallHeld <= budget, `1 MiB READs held ${maxSmallHeld} bytes of buffers at once, more than the ${budget} budget`);
      await until(() => pool.held === 0, 'every buffer back once its reply was sent');
      assert.ok(pool.freeBytes <= budget, `the pool keeps ${pool.freeBytes} bytes, more than the budget`);
      assert.deepEqual(logs, []);
    } finally {
      p.socket.destroy();
      for (const release of device.waiting.splice(0)) release();
    }
  });
});
