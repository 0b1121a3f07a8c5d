// The base of every BlockDevice that wraps another one (counting, fault injection, rate limiting,
// the tests' recorders): as nbdkit's filters pass every call they do not change to `next`, a
// FilterDevice forwards every operation, capabilities included, to `inner`, and a subclass
// overrides only what it changes.

import {
  capabilitiesOf,
  type BlockDevice,
  type DeviceCapabilities,
  type Extent,
  type WriteOptions,
  type ZeroOptions,
} from './block-device.js';

/** The optional operations of BlockDevice. */
type OptionalOperation = 'readInto' | 'readNow' | 'writev' | 'writeNow' | 'extents' | 'grow' | 'health';

/**
 * Each optional operation and the operations it is another way of doing, the mandatory one
 * first: readInto and readNow read what read() reads, writev and writeNow write as write() does.
 */
const OTHER_WAY_OF: Record<OptionalOperation, readonly string[]> = {
  readInto: ['read'],
  readNow: ['read', 'readInto'],
  writev: ['write'],
  writeNow: ['write', 'writev'],
  extents: [],
  grow: [],
  health: [],
};

/**
 * Forwards everything to `inner`.
 *
 * Invariant: an optional operation `op` is offered (`filter.op` is a function) exactly when
 *   1. the inner device offers it, and
 *   2. the subclass overrides `op` whenever it overrides an operation `op` is another way of
 *      doing (OTHER_WAY_OF).
 * Otherwise `filter.op` is undefined, and callers take the mandatory way (read(), write()),
 * which goes through the subclass. So a fast path never appears over a device that lacks it
 * (readNow over a MemoryDevice), and a filter that changes writes (fails, gates, counts them)
 * is never gone around by a writev or writeNow it did not change as well: it loses them, and
 * its writes are made with write(). writeZeroes and discard are operations of their own: a
 * filter that changes write() and not them lets them through, as an nbdkit filter would.
 *
 * A subclass that overrides an optional operation also overrides the mandatory one of its kind
 * (read for readInto and readNow, write for writev and writeNow), or its constructor throws:
 * read() and write() would go around the change. Operations are methods, never instance
 * fields: the constructor decides from the prototypes, before a subclass's fields exist.
 *
 * Capabilities are the inner device's. A subclass that changes what zeroing or discarding costs
 * or does (FaultDevice writes zeroes as data) overrides `capabilities` to say so.
 */
export class FilterDevice implements BlockDevice {
  constructor(readonly inner: BlockDevice) {
    for (const op of Object.keys(OTHER_WAY_OF) as OptionalOperation[]) {
      const others = OTHER_WAY_OF[op];
      const own = overrides(this, op);
      if (own && others.length > 0 && !overrides(this, others[0]!)) {
        throw new TypeError(`${new.target.name} overrides ${op} but not ${others[0]}: ${others[0]}() would go around it`);
      }
      const offered = inner[op] !== undefined && (own || !others.some((other) => overrides(this, other)));
      // Shadows the prototype's method on this instance: `filter.op` reads undefined.
      if (!offered) Object.defineProperty(this, op, { value: undefined });
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

  get capabilities(): DeviceCapabilities {
    return capabilitiesOf(this.inner);
  }

  read(offset: number, length: number): Promise<Buffer> {
    return this.inner.read(offset, length);
  }

  readInto?(offset: number, out: Buffer): Promise<void> {
    return this.inner.readInto!(offset, out);
  }

  readNow?(offset: number, out: Buffer): boolean {
    return this.inner.readNow!(offset, out);
  }

  write(offset: number, data: Uint8Array, options?: WriteOptions): Promise<void> {
    return this.inner.write(offset, data, options);
  }

  writev?(offset: number, parts: readonly Uint8Array[], options?: WriteOptions): Promise<void> {
    return this.inner.writev!(offset, parts, options);
  }

  writeNow?(offset: number, parts: readonly Uint8Array[], options?: WriteOptions): boolean {
    return this.inner.writeNow!(offset, parts, options);
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

  extents?(offset: number, length: number): Promise<Extent[]> {
    return this.inner.extents!(offset, length);
  }

  grow?(size: number): Promise<void> {
    return this.inner.grow!(size);
  }

  health?(): Promise<string | undefined> {
    return this.inner.health!();
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

/** Whether a class between `device`'s own and FilterDevice defines `name`. */
function overrides(device: FilterDevice, name: string): boolean {
  for (let p: object | null = Object.getPrototypeOf(device) as object | null; p !== null && p !== FilterDevice.prototype; p = Object.getPrototypeOf(p) as object | null) {
    if (Object.hasOwn(p, name)) return true;
  }
  return false;
}

/** The device at the bottom of a chain of filters: what `device` finally reads and writes. */
export function baseDevice(device: BlockDevice): BlockDevice {
  let d = device;
  while (d instanceof FilterDevice) d = d.inner;
  return d;
}
