// The NBD client against servers we did not write (nbdkit's memory and file plugins, qemu-nbd)
// and against llraid's own NbdServer, over unix sockets and loopback TCP: many requests in
// flight checked against a shadow copy, FUA, flush, trim and zeroing read back, and a write
// larger than the server's maximum payload split to fit it.

import { writeFileSync, readFileSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryDevice } from '../../src/block/memory-device.js';
import { NbdClientDevice, NbdServer } from '../../src/nbd/index.js';
import { tempDir } from '../support/temp-dir.js';
import { freePort, randomIoAgainstShadow, random, startNbdkit, startQemuNbd, type ServerProcess } from './client-helpers.js';

const MiB = 1024 * 1024;

/** Checks every operation of the client on an export of at least 80 MiB, zeroed first. */
function exerciseDevice(connect: () => Promise<NbdClientDevice>, options: { file?: () => string } = {}): void {
  let dev: NbdClientDevice;
  before(async () => {
    dev = await connect();
  });
  after(async () => {
    await dev?.close();
  });

  test('size, block size and capabilities come from the handshake', () => {
    assert.ok(dev.size >= 80 * MiB);
    assert.ok(dev.blockSize >= 512);
    assert.equal(dev.readOnly, false);
    assert.equal(dev.capabilities.flush, true);
    assert.equal(dev.capabilities.writeZeroes, true);
  });

  test('hundreds of random reads and writes in flight match a shadow copy', async () => {
    await dev.writeZeroes(0, dev.size);
    const small = new NbdClientDeviceWindow(dev, 8 * MiB);
    await randomIoAgainstShadow(small, { rounds: 12, perRound: 300, maxBlocks: 24, seed: 7 });
  });

  test('FUA writes and flush: the data reads back', async () => {
    const data = Buffer.alloc(64 * 1024, 0xa5);
    await dev.write(MiB, data, { fua: true });
    await dev.flush();
    assert.ok((await dev.read(MiB, data.length)).equals(data));
  });

  test('trim then write zeroes with and without NO_HOLE read back as zeroes', async () => {
    const data = Buffer.alloc(256 * 1024, 0x5a);
    await dev.write(2 * MiB, data);
    await dev.discard(2 * MiB, 64 * 1024);
    await dev.writeZeroes(2 * MiB, 64 * 1024);
    await dev.writeZeroes(2 * MiB + 64 * 1024, 64 * 1024, { noHole: true });
    await dev.writeZeroes(2 * MiB + 128 * 1024, 64 * 1024, { noHole: true, fua: true });
    const back = await dev.read(2 * MiB, data.length);
    assert.ok(back.subarray(0, 192 * 1024).equals(Buffer.alloc(192 * 1024)));
    assert.ok(back.subarray(192 * 1024).equals(data.subarray(192 * 1024)));
    if (options.file) {
      // The file under the export holds the same bytes.
      assert.ok(readFileSync(options.file()).subarray(2 * MiB, 2 * MiB + data.length).equals(back));
    }
  });

  test('a 64 MiB write and read are split by the maximum payload', async () => {
    const big = Buffer.allocUnsafe(64 * MiB);
    const rnd = random(3);
    for (let i = 0; i < big.length; i += 4) big.writeUInt32LE((rnd() * 0x100000000) >>> 0, i);
    await dev.write(8 * MiB, big);
    const back = Buffer.alloc(big.length);
    await dev.readInto(8 * MiB, back);
    assert.ok(back.equals(big));
  });
}

/** The first `size` bytes of a device: the shadow test's working set stays small. */
class NbdClientDeviceWindow {
  readonly blockSize: number;
  constructor(private readonly dev: NbdClientDevice, readonly size: number) {
    this.blockSize = dev.blockSize;
  }
  readonly readOnly = false;
  read(offset: number, length: number): Promise<Buffer> { return this.dev.read(offset, length); }
  write(offset: number, data: Uint8Array, o?: { fua?: boolean }): Promise<void> { return this.dev.write(offset, data, o); }
  flush(): Promise<void> { return this.dev.flush(); }
  discard(offset: number, length: number): Promise<void> { return this.dev.discard(offset, length); }
  writeZeroes(offset: number, length: number): Promise<void> { return this.dev.writeZeroes(offset, length); }
  close(): Promise<void> { return Promise.resolve(); }
}

describe('NBD client with nbdkit memory over a unix socket', () => {
  const dir = tempDir({ after }, 'nbd-client-mem');
  let server: ServerProcess;
  before(async () => {
    server = await startNbdkit(dir, join(dir, 'nbd.sock'), ['memory', '96M']);
  });
  exerciseDevice(() => NbdClientDevice.connect({ uri: `nbd+unix:///?socket=${join(dir, 'nbd.sock')}` }));
  after(async () => server?.stop());
});

describe('NBD client with nbdkit file over TCP on 127.0.0.1', () => {
  const dir = tempDir({ after }, 'nbd-client-file', '/dev/shm');
  const file = join(dir, 'disk.img');
  let server: ServerProcess;
  let port: number;
  before(async () => {
    writeFileSync(file, '');
    truncateSync(file, 96 * MiB);
    port = await freePort();
    server = await startNbdkit(dir, port, ['file', `file=${file}`]);
  });
  exerciseDevice(() => NbdClientDevice.connect({ uri: `nbd://127.0.0.1:${port}/` }), { file: () => file });
  after(async () => server?.stop());
});

describe('NBD client with qemu-nbd over a unix socket', () => {
  const dir = tempDir({ after }, 'nbd-client-qemu', '/dev/shm');
  const file = join(dir, 'disk.img');
  let server: ServerProcess;
  before(async () => {
    writeFileSync(file, '');
    truncateSync(file, 96 * MiB);
    server = await startQemuNbd(join(dir, 'nbd.sock'), file, ['-x', 'disk']);
  });
  exerciseDevice(() => NbdClientDevice.connect({ uri: `nbd+unix:///disk?socket=${join(dir, 'nbd.sock')}` }), { file: () => file });
  after(async () => server?.stop());
});

describe("NBD client with llraid's own NbdServer (in process)", () => {
  const dir = tempDir({ after }, 'nbd-client-llraid');
  const device = new MemoryDevice(96 * MiB, { blockSize: 512 });
  const server = new NbdServer({ exports: [{ name: 'vol', device }] });
  before(async () => {
    await server.listen({ socket: join(dir, 'nbd.sock') });
  });
  exerciseDevice(() => NbdClientDevice.connect({ uri: `nbd+unix:///vol?socket=${join(dir, 'nbd.sock')}` }));
  after(async () => server.close());

  test('extents come from base:allocation', async () => {
    const dev = await NbdClientDevice.connect({ uri: `nbd+unix:///vol?socket=${join(dir, 'nbd.sock')}` });
    try {
      assert.ok(dev.extents, 'base:allocation negotiated');
      await dev.discard(90 * MiB, 2 * MiB);
      await dev.write(90 * MiB, Buffer.alloc(64 * 1024, 1));
      const extents = await dev.extents(90 * MiB, 2 * MiB);
      assert.equal(extents.reduce((s, e) => s + e.length, 0), 2 * MiB);
      assert.deepEqual(extents[0], { length: 64 * 1024, hole: false, zero: false });
      assert.equal(extents.at(-1)!.hole, true);
    } finally {
      await dev.close();
    }
  });
});

describe('NBD client and a server that advertises a small maximum payload', () => {
  const dir = tempDir({ after }, 'nbd-client-maxpayload');
  let server: ServerProcess;
  before(async () => {
    // blocksize-error-policy=error: a request over the maximum is refused, not split by nbdkit.
    server = await startNbdkit(dir, join(dir, 'nbd.sock'), ['--filter=blocksize-policy', 'memory', '80M',
      'blocksize-minimum=512', 'blocksize-preferred=4096', 'blocksize-maximum=1048576', 'blocksize-error-policy=error']);
  });
  after(async () => server?.stop());

  test('a 64 MiB write and read go in requests of at most the advertised maximum', async () => {
    const dev = await NbdClientDevice.connect({ uri: `nbd+unix:///?socket=${join(dir, 'nbd.sock')}` });
    try {
      assert.equal(dev.maxPayload, MiB);
      const big = Buffer.alloc(64 * MiB);
      for (let i = 0; i < big.length; i += 4096) big.writeUInt32LE(i, i);
      await dev.write(4 * MiB, big);
      assert.ok((await dev.read(4 * MiB, big.length)).equals(big));
    } finally {
      await dev.close();
    }
  });
});
