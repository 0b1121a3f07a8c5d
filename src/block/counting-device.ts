// A pass-through BlockDevice that counts what its users asked of it, by kind: the I/O numbers an
// engine reports for its volume (metrics). Requests that fail are not counted; nothing else is
// changed about them.

import { writeParts, type BlockDevice, type Extent, type WriteOptions, type ZeroOptions } from './block-device.js';

export interface IoCounters {
  readOps: number;
  readBytes: number;
  writeOps: number;
  writeBytes: number;
  flushOps: number;
  discardOps: number;
  discardBytes: number;
  zeroOps: number;
  zeroBytes: number;
}

export class CountingDevice implements BlockDevice {
  readonly counters: IoCounters = {
    readOps: 0, readBytes: 0, writeOps: 0, writeBytes: 0, flushOps: 0, discardOps: 0, discardBytes: 0, zeroOps: 0, zeroBytes: 0,
  };

  /**
   * Present exactly when the inner device reads into caller buffers natively, so that a caller
   * choosing between readInto and read (the NBD server) sees what the inner device does.
   */
  readonly readInto?: (offset: number, out: Buffer) => Promise<void>;
  /** Present exactly when the inner device has them, for the same reason. */
  readonly readNow?: (offset: number, out: Buffer) => boolean;
  readonly writeNow?: (offset: number, parts: readonly Uint8Array[]) => boolean;

  constructor(readonly inner: BlockDevice) {
    const native = inner.readInto?.bind(inner);
    if (native) {
      this.readInto = async (offset, out) => {
        await native(offset, out);
        this.counters.readOps++;
        this.counters.readBytes += out.length;
      };
    }
    const readNow = inner.readNow?.bind(inner);
    if (readNow) {
      this.readNow = (offset, out) => {
        if (!readNow(offset, out)) return false;
        this.counters.readOps++;
        this.counters.readBytes += out.length;
        return true;
      };
    }
    const writeNow = inner.writeNow?.bind(inner);
    if (writeNow) {
      this.writeNow = (offset, parts) => {
        if (!writeNow(offset, parts)) return false;
        this.counters.writeOps++;
        for (const p of parts) this.counters.writeBytes += p.length;
        return true;
      };
    }
  }

  get size(): number {
    return this.inner.size;
  }

  get blockSize(): number {
    return this.inner.blockSize;
  }

  get readOnly(): boolean {
    return this.inner.readOnly;
  }

  async read(offset: number, length: number): Promise<Buffer> {
    const data = await this.inner.read(offset, length);
    this.counters.readOps++;
    this.counters.readBytes += length;
    return data;
  }

  async write(offset: number, data: Uint8Array, options?: WriteOptions): Promise<void> {
    await this.inner.write(offset, data, options);
    this.counters.writeOps++;
    this.counters.writeBytes += data.length;
  }

  async writev(offset: number, parts: readonly Uint8Array[], options?: WriteOptions): Promise<void> {
    await writeParts(this.inner, offset, parts, options);
    this.counters.writeOps++;
    for (const p of parts) this.counters.writeBytes += p.length;
  }

  async flush(): Promise<void> {
    await this.inner.flush();
    this.counters.flushOps++;
  }

  async discard(offset: number, length: number): Promise<void> {
    await this.inner.discard(offset, length);
    this.counters.discardOps++;
    this.counters.discardBytes += length;
  }

  async writeZeroes(offset: number, length: number, options?: ZeroOptions): Promise<void> {
    await this.inner.writeZeroes(offset, length, options);
    this.counters.zeroOps++;
    this.counters.zeroBytes += length;
  }

  /** The inner device's map; a device without one is all data. */
  extents(offset: number, length: number): Promise<Extent[]> {
    return this.inner.extents ? this.inner.extents(offset, length) : Promise.resolve([{ length, hole: false, zero: false }]);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
