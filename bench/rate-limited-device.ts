// A member that moves at most `bytesPerSecond`, as a disk of its own would: for benchmarks that
// ask how well an array keeps several members busy, which files on one tmpfs cannot show (they
// share one memory bus, so every extra member write slows all the others). Reads and writes
// queue for the member's bandwidth in arrival order; the I/O itself then goes to the file.

import type { BlockDevice, Extent, WriteOptions, ZeroOptions } from '../src/block/block-device.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export class RateLimitedDevice implements BlockDevice {
  /** performance.now() at which the member's bandwidth is free again. */
  private freeAt = 0;

  constructor(
    private readonly inner: BlockDevice,
    private readonly bytesPerSecond: number,
  ) {}

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
    await this.transfer(length);
    return this.inner.read(offset, length);
  }

  async write(offset: number, data: Uint8Array, options?: WriteOptions): Promise<void> {
    await this.transfer(data.length);
    return this.inner.write(offset, data, options);
  }

  flush(): Promise<void> {
    return this.inner.flush();
  }

  discard(offset: number, length: number): Promise<void> {
    return this.inner.discard(offset, length);
  }

  writeZeroes(offset: number, length: number, options?: ZeroOptions): Promise<void> {
    return this.inner.writeZeroes(offset, length, options);
  }

  extents(offset: number, length: number): Promise<Extent[]> {
    return this.inner.extents ? this.inner.extents(offset, length) : Promise.resolve([{ length, hole: false, zero: false }]);
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  /** Waits until `bytes` have had their turn on the member: the end of this request's slot. */
  private async transfer(bytes: number): Promise<void> {
    const now = performance.now();
    this.freeAt = Math.max(this.freeAt, now) + (bytes / this.bytesPerSecond) * 1000;
    const wait = this.freeAt - now;
    if (wait >= 1) await sleep(wait);
  }
}
