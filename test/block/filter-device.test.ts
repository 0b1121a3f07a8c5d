// FilterDevice forwards every operation to its inner device, and offers an optional one exactly
// when the inner device has it and the subclass did not change what it is another way of doing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULT_CAPABILITIES, writeParts, type BlockDevice, type DeviceCapabilities, type Extent, type WriteOptions, type ZeroOptions } from '../../src/block/block-device.js';
import { CountingDevice } from '../../src/block/counting-device.js';
import { FaultDevice } from '../../src/block/fault-device.js';
import { FilterDevice } from '../../src/block/filter-device.js';
import { MemoryDevice } from '../../src/block/memory-device.js';

const OPTIONAL = ['readInto', 'readNow', 'writev', 'writeNow', 'extents', 'grow', 'health'] as const;
type Optional = (typeof OPTIONAL)[number];

/** An inner device that logs every call with its arguments and answers with a value of its own. */
class LoggingDevice implements BlockDevice {
  size = 1 << 20;
  readonly blockSize = 4096;
  readonly readOnly = false;
  readonly capabilities: DeviceCapabilities = { ...DEFAULT_CAPABILITIES, fastZero: true, trim: false };
  readonly calls: Array<[string, ...unknown[]]> = [];
  readonly extentsAnswer: Extent[] = [{ length: 4096, hole: true, zero: true }];

  constructor(offered: readonly Optional[] = OPTIONAL) {
    // The optional operations this device does not have are taken off it.
    for (const op of OPTIONAL) if (!offered.includes(op)) Object.defineProperty(this, op, { value: undefined });
  }

  async read(offset: number, length: number): Promise<Buffer> {
    this.calls.push(['read', offset, length]);
    return Buffer.alloc(length, 7);
  }
  async readInto(offset: number, out: Buffer): Promise<void> {
    this.calls.push(['readInto', offset, out.length]);
    out.fill(8);
  }
  readNow(offset: number, out: Buffer): boolean {
    this.calls.push(['readNow', offset, out.length]);
    return offset === 0;
  }
  async write(offset: number, data: Uint8Array, options?: WriteOptions): Promise<void> {
    this.calls.push(['write', offset, data.length, options]);
  }
  async writev(offset: number, parts: readonly Uint8Array[], options?: WriteOptions): Promise<void> {
    this.calls.push(['writev', offset, parts.length, options]);
  }
  writeNow(offset: number, parts: readonly Uint8Array[]): boolean {
    this.calls.push(['writeNow', offset, parts.length]);
    return offset === 0;
  }
  async flush(): Promise<void> {
    this.calls.push(['flush']);
  }
  async discard(offset: number, length: number): Promise<void> {
    this.calls.push(['discard', offset, length]);
  }
  async writeZeroes(offset: number, length: number, options?: ZeroOptions): Promise<void> {
    this.calls.push(['writeZeroes', offset, length, options]);
  }
  async extents(offset: number, length: number): Promise<Extent[]> {
    this.calls.push(['extents', offset, length]);
    return this.extentsAnswer;
  }
  async grow(size: number): Promise<void> {
    this.calls.push(['grow', size]);
    this.size = size;
  }
  async health(): Promise<string | undefined> {
    this.calls.push(['health']);
    return 'tired';
  }
  async close(): Promise<void> {
    this.calls.push(['close']);
  }
}

/** Every subset of the optional operations. */
function subsets(): Optional[][] {
  return Array.from({ length: 1 << OPTIONAL.length }, (_, mask) => OPTIONAL.filter((_, i) => (mask & (1 << i)) !== 0));
}

function offered(device: BlockDevice): Optional[] {
  return OPTIONAL.filter((op) => typeof device[op] === 'function');
}

test('every operation of a FilterDevice reaches the inner device, with its arguments, and its answer comes back', async () => {
  const inner = new LoggingDevice();
  const f = new FilterDevice(inner);
  const fua = { fua: true };
  const zero = { noHole: true, fast: true };
  assert.deepEqual([f.size, f.blockSize, f.readOnly], [1 << 20, 4096, false]);
  assert.equal(f.capabilities, inner.capabilities);
  assert.deepEqual(await f.read(4096, 8), Buffer.alloc(8, 7));
  const out = Buffer.alloc(16);
  await f.readInto!(8192, out);
  assert.deepEqual(out, Buffer.alloc(16, 8));
  assert.deepEqual([f.readNow!(0, out), f.readNow!(512, out)], [true, false]);
  await f.write(0, Buffer.alloc(512), fua);
  await f.writev!(512, [Buffer.alloc(512), Buffer.alloc(512)], fua);
  assert.deepEqual([f.writeNow!(0, [Buffer.alloc(512)]), f.writeNow!(512, [Buffer.alloc(512)])], [true, false]);
  await f.flush();
  await f.discard(4096, 4096);
  await f.writeZeroes(8192, 4096, zero);
  assert.equal(await f.extents!(0, 4096), inner.extentsAnswer);
  await f.grow!(2 << 20);
  assert.equal(f.size, 2 << 20, 'the size is the inner device\'s, grown');
  assert.equal(await f.health!(), 'tired');
  await f.close();
  assert.deepEqual(inner.calls, [
    ['read', 4096, 8],
    ['readInto', 8192, 16],
    ['readNow', 0, 16],
    ['readNow', 512, 16],
    ['write', 0, 512, fua],
    ['writev', 512, 2, fua],
    ['writeNow', 0, 1],
    ['writeNow', 512, 1],
    ['flush'],
    ['discard', 4096, 4096],
    ['writeZeroes', 8192, 4096, zero],
    ['extents', 0, 4096],
    ['grow', 2 << 20],
    ['health'],
    ['close'],
  ]);
});

test('a FilterDevice offers an optional operation exactly when its inner device has it', () => {
  for (const has of subsets()) {
    const inner = new LoggingDevice(has);
    assert.deepEqual(offered(inner), has, 'the fixture');
    assert.deepEqual(offered(new FilterDevice(inner)), has);
    // Filters stack: the same holds two deep.
    assert.deepEqual(offered(new FilterDevice(new FilterDevice(inner))), has);
    assert.deepEqual(offered(new CountingDevice(inner)), has, 'CountingDevice counts every way and keeps each');
  }
  assert.deepEqual(offered(new FilterDevice(new MemoryDevice(1 << 20))), ['extents', 'grow']);
});

/** Fails every write: a filter that changes write() and nothing else. */
class FailWrites extends FilterDevice {
  override async write(): Promise<void> {
    throw new Error('refused');
  }
}

/** Reads ones: a filter that changes read() and nothing else. */
class Ones extends FilterDevice {
  override async read(_offset: number, length: number): Promise<Buffer> {
    return Buffer.alloc(length, 1);
  }
}

test('a filter that changes write() or read() is not gone around: the other ways of doing it are not offered', async () => {
  for (const has of subsets()) {
    const expect = (gone: readonly Optional[]): Optional[] => has.filter((op) => !gone.includes(op));
    assert.deepEqual(offered(new FailWrites(new LoggingDevice(has))), expect(['writev', 'writeNow']));
    assert.deepEqual(offered(new Ones(new LoggingDevice(has))), expect(['readInto', 'readNow']));
  }
  // What a caller then does (the NBD server, md) goes through the change.
  const inner = new LoggingDevice();
  const failing = new FailWrites(inner);
  await assert.rejects(writeParts(failing, 0, [Buffer.alloc(512), Buffer.alloc(512)]), /refused/);
  assert.deepEqual(inner.calls, []);
  // A FaultDevice changes reads and writes: over a device with every fast path it offers none.
  assert.deepEqual(offered(new FaultDevice(new LoggingDevice())), ['extents', 'grow', 'health']);
});

test('a subclass that overrides a fast path keeps it only over an inner device that has it, and may not skip the mandatory operation', () => {
  class CountsWritesNow extends FilterDevice {
    n = 0;
    override write(offset: number, data: Uint8Array, options?: WriteOptions): Promise<void> {
      this.n++;
      return super.write(offset, data, options);
    }
    override writeNow?(offset: number, parts: readonly Uint8Array[]): boolean {
      this.n++;
      return super.writeNow!(offset, parts);
    }
  }
  const full = new CountsWritesNow(new LoggingDevice());
  assert.deepEqual(offered(full), ['readInto', 'readNow', 'writeNow', 'extents', 'grow', 'health'], 'writev went with write, writeNow stays');
  assert.equal(full.writeNow!(0, [Buffer.alloc(512)]), true);
  assert.equal(full.n, 1);
  assert.equal(new CountsWritesNow(new LoggingDevice(['writev'])).writeNow, undefined);

  class WriteNowOnly extends FilterDevice {
    override writeNow?(offset: number, parts: readonly Uint8Array[]): boolean {
      return super.writeNow!(offset, parts);
    }
  }
  assert.throws(() => new WriteNowOnly(new LoggingDevice()), { name: 'TypeError', message: /overrides writeNow but not write/ });
  class ReadIntoOnly extends FilterDevice {
    override readInto?(offset: number, out: Buffer): Promise<void> {
      return super.readInto!(offset, out);
    }
  }
  assert.throws(() => new ReadIntoOnly(new MemoryDevice(4096)), /overrides readInto but not read/);
});

test('capabilities are the inner device\'s, and a filter that changes zeroing and discarding says so', () => {
  const memory = new MemoryDevice(1 << 20);
  assert.equal(memory.capabilities.fastZero, true);
  assert.deepEqual(new CountingDevice(memory).capabilities, memory.capabilities);
  const fault = new FaultDevice(memory);
  assert.deepEqual(fault.capabilities, { ...memory.capabilities, trim: false, fastZero: false });
  // An inner device that declares nothing has the default, which never claims fast zeroing.
  const plain = new LoggingDevice();
  Object.defineProperty(plain, 'capabilities', { value: undefined });
  assert.deepEqual(new FilterDevice(plain).capabilities, DEFAULT_CAPABILITIES);
  assert.equal(DEFAULT_CAPABILITIES.fastZero, false);
});
