// A BlockDevice in memory, stored sparsely in fixed-size pages so that a large device that is
// mostly unwritten costs little. For tests and benchmarks; also the inner store of FaultDevice tests.

import { forEachUnitPiece } from './unit-ranges.js';
import { checkRange, DEFAULT_CAPABILITIES, type BlockDevice, type DeviceCapabilities, type Extent, type ZeroOptions } from './block-device.js';
import { ReadOnlyError, ShutdownError } from './errors.js';

const PAGE = 64 * 1024;

export interface MemoryDeviceOptions {
  blockSize?: number;
  readOnly?: boolean;
  name?: string;
}

export class MemoryDevice implements BlockDevice {
  /** Changes only in grow(). */
  size: number;
  readonly blockSize: number;
  readonly readOnly: boolean;
  readonly name: string;
  /** Zeroing drops whole pages and clears the rest of the range: never dearer than a write. */
  readonly capabilities: DeviceCapabilities = { ...DEFAULT_CAPABILITIES, fastZero: true };
  /** Page index → contents. An absent page reads as zeroes and is reported as a hole. */
  private readonly pages = new Map<number, Buffer>();
  private closed = false;

  constructor(size: number, options: MemoryDeviceOptions = {}) {
    this.size = size;
    this.blockSize = options.blockSize ?? 512;
    this.readOnly = options.readOnly ?? false;
    this.name = options.name ?? 'memory';
  }

  async read(offset: number, length: number): Promise<Buffer> {
    this.check(offset, length);
    const out = Buffer.alloc(length);
    this.forEachPage(offset, length, (page, pageOff, bufOff, n) => {
      this.pages.get(page)?.copy(out, bufOff, pageOff, pageOff + n);
    });
    return out;
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    this.check(offset, data.length, true);
    this.forEachPage(offset, data.length, (page, pageOff, bufOff, n) => {
      let p = this.pages.get(page);
      if (!p) {
        p = Buffer.alloc(PAGE);
        this.pages.set(page, p);
      }
      p.set(data.subarray(bufOff, bufOff + n), pageOff);
    });
  }

  async flush(): Promise<void> {
    this.check(0, 0);
  }

  async discard(offset: number, length: number): Promise<void> {
    await this.writeZeroes(offset, length);
  }

  async writeZeroes(offset: number, length: number, _options?: ZeroOptions): Promise<void> {
    this.check(offset, length, true);
    this.forEachPage(offset, length, (page, pageOff, _bufOff, n) => {
      if (n === PAGE) this.pages.delete(page);
      else this.pages.get(page)?.fill(0, pageOff, pageOff + n);
    });
  }

  async extents(offset: number, length: number): Promise<Extent[]> {
    this.check(offset, length);
    const out: Extent[] = [];
    this.forEachPage(offset, length, (page, _pageOff, _bufOff, n) => {
      const hole = !this.pages.has(page);
      const last = out[out.length - 1];
      if (last && last.hole === hole) last.length += n;
      else out.push({ length: n, hole, zero: hole });
    });
    return out;
  }

  async grow(size: number): Promise<void> {
    this.check(0, 0, true);
    this.size = Math.max(this.size, size);
  }

  async close(): Promise<void> {
    this.closed = true;
    this.pages.clear();
  }

  /** Bytes of memory held by written pages. */
  get allocatedBytes(): number {
    return this.pages.size * PAGE;
  }

  private check(offset: number, length: number, writing = false): void {
    if (this.closed) throw new ShutdownError(`${this.name}: device is closed`);
    if (writing && this.readOnly) throw new ReadOnlyError(`${this.name}: device is read-only`);
    checkRange(this.name, this.size, offset, length);
  }

  private forEachPage(
    offset: number,
    length: number,
    fn: (page: number, pageOff: number, bufOff: number, n: number) => void,
  ): void {
    forEachUnitPiece(offset, length, PAGE, (page, pageOff, n, bufOff) => fn(page, pageOff, bufOff, n));
  }
}
