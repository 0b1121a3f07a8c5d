// Fuzzing the NBD server with thousands of random and mutated byte streams, in the handshake and
// in the transmission phase. Afterwards the server must still serve a real client, hold no
// connection, and the export may differ from its start only where the device accepted a write.

import { createConnection } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { BlockDevice, Extent, WriteOptions, ZeroOptions } from '../../src/block/block-device.js';
import { isBlockError } from '../../src/block/errors.js';
import { MemoryDevice } from '../../src/block/memory-device.js';
import { NbdServer } from '../../src/nbd/index.js';
import { patternBytes, tempDir, tool } from './helpers.js';

const SIZE = 1024 * 1024;
const CASES = Number(process.env.NBD_FUZZ_CASES ?? 6000);
const SEED = Number(process.env.NBD_FUZZ_SEED ?? Date.now() % 1_000_000);

/** Records every range the server changed on the device, and any out-of-range call it made. */
class RecordingDevice implements BlockDevice {
  readonly changed: Array<[number, number]> = [];
  outOfRangeCalls = 0;
  constructor(private readonly inner: MemoryDevice) {}
  get size(): number {
    return this.inner.size;
  }
  get blockSize(): number {
    return this.inner.blockSize;
  }
  get readOnly(): boolean {
    return this.inner.readOnly;
  }
  read(offset: number, length: number): Promise<Buffer> {
    return this.watch(this.inner.read(offset, length));
  }
  write(offset: number, data: Uint8Array, _options?: WriteOptions): Promise<void> {
    // Recorded before the device runs, so a write that fails half-way is still accounted for.
    this.changed.push([offset, data.length]);
    // A memory device is as durable as it gets: FUA changes nothing for it.
    return this.watch(this.inner.write(offset, data));
  }
  flush(): Promise<void> {
    return this.inner.flush();
  }
  discard(offset: number, length: number): Promise<void> {
    this.changed.push([offset, length]);
    return this.watch(this.inner.discard(offset, length));
  }
  writeZeroes(offset: number, length: number, options?: ZeroOptions): Promise<void> {
    this.changed.push([offset, length]);
    return this.watch(this.inner.writeZeroes(offset, length, options));
  }
  extents(offset: number, length: number): Promise<Extent[]> {
    return this.watch(this.inner.extents(offset, length));
  }
  close(): Promise<void> {
    return this.inner.close();
  }
  private watch<T>(p: Promise<T>): Promise<T> {
    return p.catch((err: unknown) => {
      if (isBlockError(err, 'ERANGE') || isBlockError(err, 'EINVAL')) this.outOfRangeCalls++;
      throw err;
    });
  }
}

/** xorshift32: the whole run is reproducible from NBD_FUZZ_SEED. */
function rng(seed: number): { int(n: number): number; bytes(n: number): Buffer; chance(p: number): boolean } {
  let x = seed >>> 0 || 0x9e3779b9;
  const next = (): number => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 0x100000000;
  };
  return {
    int: (n) => Math.floor(next() * n),
    bytes: (n) => Buffer.from(Array.from({ length: n }, () => Math.floor(next() * 256))),
    chance: (p) => next() < p,
  };
}
type Rng = ReturnType<typeof rng>;

function option(code: number, data: Buffer): Buffer {
  const h = Buffer.alloc(16);
  h.writeBigUInt64BE(0x49484156454f5054n, 0);
  h.writeUInt32BE(code, 8);
  h.writeUInt32BE(data.length, 12);
  return Buffer.concat([h, data]);
}

function lengthPrefixed(s: string): Buffer {
  const b = Buffer.from(s);
  const out = Buffer.alloc(4 + b.length);
  out.writeUInt32BE(b.length, 0);
  b.copy(out, 4);
  return out;
}

/** A valid negotiation that ends in transmission, with optional structured replies and meta context. */
function handshake(r: Rng): Buffer {
  const parts: Buffer[] = [Buffer.from([0, 0, 0, 3])];
  const structured = r.chance(0.7);
  if (structured) parts.push(option(8, Buffer.alloc(0)));
  if (structured && r.chance(0.7)) {
    parts.push(option(10, Buffer.concat([lengthPrefixed('fuzz'), Buffer.from([0, 0, 0, 1]), lengthPrefixed('base:allocation')])));
  }
  if (r.chance(0.2)) parts.push(option(r.int(20), r.bytes(r.int(40))));
  if (r.chance(0.1)) parts.push(option(1, Buffer.from('fuzz')));
  else parts.push(option(7, Buffer.concat([lengthPrefixed('fuzz'), Buffer.from([0, 1, 0, 3])])));
  return Buffer.concat(parts);
}

function request(r: Rng): Buffer {
  const type = r.chance(0.9) ? r.int(8) : r.int(65536);
  const flags = r.chance(0.7) ? r.int(32) & [0, 1, 3, 5, 9, 17][r.int(6)]! : r.int(65536);
  const edges = [0, 512, SIZE - 4096, SIZE - 512, SIZE, SIZE + 512, 2 ** 40];
  const offset = r.chance(0.6) ? r.int(SIZE / 512) * 512 : r.chance(0.5) ? edges[r.int(edges.length)]! : r.int(SIZE * 2);
  const length = r.chance(0.7) ? (1 + r.int(32)) * 512 : r.chance(0.5) ? r.int(5000) : r.int(2 ** 32);
  const h = Buffer.alloc(28);
  h.writeUInt32BE(r.chance(0.97) ? 0x25609513 : r.int(2 ** 32), 0);
  h.writeUInt16BE(flags, 4);
  h.writeUInt16BE(type, 6);
  h.writeUInt32BE(r.int(2 ** 32), 8);
  h.writeUInt32BE(r.int(2 ** 32), 12);
  h.writeUInt32BE(Math.floor(offset / 2 ** 32), 16);
  h.writeUInt32BE(offset % 2 ** 32, 20);
  h.writeUInt32BE(length, 24);
  if (type !== 1) return h;
  // A WRITE carries its payload; a huge one is cut short, leaving the server mid-payload.
  return Buffer.concat([h, Buffer.alloc(Math.min(length, 70_000), 0xee)]);
}

function mutate(r: Rng, b: Buffer): Buffer {
  let out: Buffer = b;
  for (let i = r.int(4); i >= 0; i--) {
    const at = r.int(out.length + 1);
    switch (r.int(4)) {
      case 0:
        if (out.length > 0) {
          const i = Math.min(at, out.length - 1);
          out[i] = out[i]! ^ (1 << r.int(8));
        }
        break;
      case 1:
        out = out.subarray(0, at);
        break;
      case 2:
        out = Buffer.concat([out.subarray(0, at), r.bytes(r.int(64)), out.subarray(at)]);
        break;
      default:
        out = Buffer.concat([out.subarray(0, at), out.subarray(Math.min(out.length, at + r.int(32)))]);
    }
  }
  return out;
}

function streamFor(r: Rng): Buffer {
  switch (r.int(4)) {
    case 0:
      return r.bytes(r.int(300));
    case 1:
      return mutate(r, Buffer.concat([handshake(r), ...Array.from({ length: r.int(6) }, () => request(r))]));
    default: {
      const body = Buffer.concat(Array.from({ length: 1 + r.int(8) }, () => request(r)));
      return Buffer.concat([handshake(r), r.chance(0.5) ? mutate(r, body) : body]);
    }
  }
}

/** Sends `bytes`, half-closes, drains whatever comes back, resolves when the server hangs up. */
function play(sock: string, bytes: Buffer): Promise<void> {
  return new Promise((resolve) => {
    const c = createConnection(sock);
    const timer = setTimeout(() => c.destroy(), 5000);
    c.on('error', () => undefined);
    c.on('data', () => undefined);
    c.on('close', () => {
      clearTimeout(timer);
      resolve();
    });
    c.end(bytes);
  });
}

describe('NBD server under fuzzing', () => {
  const dir = tempDir('nbd-fuzz');
  const sock = join(dir.path, 'nbd.sock');
  const original = patternBytes(SIZE, 5);
  const device = new RecordingDevice(new MemoryDevice(SIZE, { blockSize: 512 }));
  const server = new NbdServer({ exports: [{ name: 'fuzz', device }], limits: { handshakeTimeoutMs: 5000 } });

  before(async () => {
    await device.write(0, original);
    device.changed.length = 0;
    await server.listen({ socket: sock });
  });

  after(async () => {
    await server.close();
    dir.cleanup();
  });

  test(`${CASES} random and mutated streams leave the server alive and the export intact outside accepted writes`, async () => {
    const r = rng(SEED);
    const streams = Array.from({ length: CASES }, () => streamFor(r));
    const parallel = 16;
    for (let i = 0; i < streams.length; i += parallel) {
      await Promise.all(streams.slice(i, i + parallel).map((s) => play(sock, s)));
    }
    console.log(`fuzz: ${CASES} streams (seed ${SEED}), ${device.changed.length} device writes/zeroes/discards`);

    // Connections may linger for a moment after the client's FIN while their requests finish.
    for (let i = 0; i < 100 && server.connectionCount > 0; i++) await new Promise((res) => setTimeout(res, 20));
    assert.equal(server.connectionCount, 0, 'every fuzz connection was closed');
    assert.equal(device.outOfRangeCalls, 0, 'the server never handed the device an invalid range');

    const now = await device.read(0, SIZE);
    const touched = new Uint8Array(SIZE);
    for (const [offset, length] of device.changed) {
      assert.ok(offset >= 0 && offset + length <= SIZE, `device change [${offset}, +${length}) inside the export`);
      touched.fill(1, offset, offset + length);
    }
    for (let i = 0; i < SIZE; i++) {
      if (now[i] !== original[i] && touched[i] === 0) assert.fail(`byte ${i} changed without an accepted write (seed ${SEED})`);
    }

    const info = JSON.parse(await tool('nbdinfo', ['--json', `nbd+unix:///fuzz?socket=${sock}`])) as { exports: Array<{ 'export-size': number }> };
    assert.equal(info.exports[0]!['export-size'], SIZE);
  });
});
