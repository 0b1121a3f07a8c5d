// A member that moves at most `bytesPerSecond`, as a disk of its own would: for benchmarks that
// ask how well an array keeps several members busy, which files on one tmpfs cannot show (they
// share one memory bus, so every extra member write slows all the others). Reads and writes
// queue for the member's bandwidth in arrival order; the I/O itself then goes to the file.

import type { BlockDevice, WriteOptions } from '../src/block/block-device.js';
import { FilterDevice } from '../src/block/filter-device.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Only read() and write() wait: readInto, writev and the fast paths are not offered (FilterDevice). */
export class RateLimitedDevice extends FilterDevice {
  /** performance.now() at which the member's bandwidth is free again. */
  private freeAt = 0;

  constructor(
    inner: BlockDevice,
    private readonly bytesPerSecond: number,
  ) {
    super(inner);
  }

  override async read(offset: number, length: number): Promise<Buffer> {
    await this.transfer(length);
    return super.read(offset, length);
  }

  override async write(offset: number, data: Uint8Array, options?: WriteOptions): Promise<void> {
    await this.transfer(data.length);
    return super.write(offset, data, options);
  }

  /** Waits until `bytes` have had their turn on the member: the end of this request's slot. */
  private async transfer(bytes: number): Promise<void> {
    const now = performance.now();
    this.freeAt = Math.max(this.freeAt, now) + (bytes / this.bytesPerSecond) * 1000;
    const wait = this.freeAt - now;
    if (wait >= 1) await sleep(wait);
  }
}
