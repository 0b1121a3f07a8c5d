// A fault-injecting BlockDevice wrapper for tests: it fails reads or writes on chosen ranges and
// simulates a power cut. It models a volatile write cache: a write is durable only once a flush
// completes after it, or when it was written with FUA. At a power cut every write that was not
// durable is kept, dropped, or torn at sector granularity (chosen by a seeded random source), the
// device stops answering, and whatever sits in the inner device afterwards is what "disk" holds.
//
// Devices that lose power together share one PowerDomain, so one cut hits every member at once.

import { SECTOR, type BlockDevice, type DeviceCapabilities, type Extent, type WriteOptions, type ZeroOptions } from './block-device.js';
import { IoError, NotSupportedError, ShutdownError } from './errors.js';
import { FilterDevice } from './filter-device.js';

export type CutMode =
  /** Every non-durable write is lost. */
  | 'drop'
  /** Every non-durable write survives (a cut with a battery-backed cache). */
  | 'keep'
  /** Each non-durable write independently survives, is lost, or is torn sector by sector. */
  | 'random';

/** A small deterministic PRNG (mulberry32), so a failing case can be replayed from its seed. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A group of devices that lose power at the same moment. */
export class PowerDomain {
  private readonly devices = new Set<FaultDevice>();
  private writesUntilCut = -1;
  private cutting: Promise<void> | undefined;
  readonly random: () => number;
  mode: CutMode;

  constructor(options: { seed?: number; mode?: CutMode } = {}) {
    this.random = seededRandom(options.seed ?? 1);
    this.mode = options.mode ?? 'random';
  }

  /** True from the moment of the cut, possibly before the members settle: await cut() for that. */
  get isCut(): boolean {
    return this.cutting !== undefined;
  }

  /**
   * Lets `n` more writes (across the domain) through; the one after them cuts the power. That
   * write reaches the inner device (and may survive, per the mode) but is never acknowledged.
   */
  cutAfterWrites(n: number): void {
    this.writesUntilCut = n;
  }

  /**
   * Cuts power now, or joins the cut already under way. Resolves once every device has settled
   * its in-flight writes and holds only what survived.
   */
  cut(): Promise<void> {
    this.cutting ??= Promise.all([...this.devices].map((d) => d.loseVolatileWrites())).then(() => undefined);
    return this.cutting;
  }

  /** @internal */
  attach(d: FaultDevice): void {
    this.devices.add(d);
  }

  /** @internal — counts a write; true when this write is the one that cuts the power. */
  countWrite(): boolean {
    if (this.writesUntilCut < 0) return false;
    if (this.writesUntilCut === 0) {
      this.writesUntilCut = -1;
      return true;
    }
    this.writesUntilCut--;
    return false;
  }
}

interface VolatileWrite {
  offset: number;
  before: Buffer;
  after: Buffer;
}

interface FaultRange {
  offset: number;
  length: number;
  /** How many more requests to fail; Infinity for every one. */
  remaining: number;
}

/**
 * Reads and writes go through the fault ranges and the write cache model, so readInto, writev
 * and the fast paths are not offered (FilterDevice); zeroing is a write of zeroes, and a discard
 * does nothing.
 */
export class FaultDevice extends FilterDevice {
  readonly name: string;
  /** Writes since the last flush that are not yet durable, in the order they were applied. */
  private volatile: VolatileWrite[] = [];
  private readonly inFlight = new Set<Promise<unknown>>();
  /** Serialises writes so each one's before-image is exact. */
  private writeChain: Promise<void> = Promise.resolve();
  private readonly readFaults: FaultRange[] = [];
  private readonly writeFaults: FaultRange[] = [];
  private closed = false;
  /** Counters for tests: requests that reached the inner device. */
  readonly stats = { reads: 0, writes: 0, flushes: 0, failedReads: 0, failedWrites: 0 };

  constructor(
    inner: BlockDevice,
    readonly power: PowerDomain = new PowerDomain(),
    name?: string,
  ) {
    super(inner);
    this.name = name ?? 'fault-device';
    power.attach(this);
  }

  /** The inner device's, but zeroing writes data here and a discard changes nothing. */
  override get capabilities(): DeviceCapabilities {
    return { ...super.capabilities, trim: false, fastZero: false };
  }

  /** Fails the next `times` reads (default: all) that overlap [offset, offset+length) with EIO. */
  failReads(offset: number, length: number, times = Infinity): void {
    this.readFaults.push({ offset, length, remaining: times });
  }

  /** Fails the next `times` writes (default: all) that overlap [offset, offset+length) with EIO. */
  failWrites(offset: number, length: number, times = Infinity): void {
    this.writeFaults.push({ offset, length, remaining: times });
  }

  /** Fails every request from now on, as a disk that died would. */
  failAll(): void {
    this.failReads(0, this.size);
    this.failWrites(0, this.size);
  }

  clearFaults(): void {
    this.readFaults.length = 0;
    this.writeFaults.length = 0;
  }

  override async read(offset: number, length: number): Promise<Buffer> {
    this.alive();
    if (hit(this.readFaults, offset, length)) {
      this.stats.failedReads++;
      throw new IoError(`${this.name}: injected read error at [${offset}, +${length})`);
    }
    this.stats.reads++;
    return this.track(this.inner.read(offset, length));
  }

  override async write(offset: number, data: Uint8Array, options?: WriteOptions): Promise<void> {
    this.alive();
    if (hit(this.writeFaults, offset, data.length)) {
      this.stats.failedWrites++;
      throw new IoError(`${this.name}: injected write error at [${offset}, +${data.length})`);
    }
    const copy = Buffer.from(data);
    await this.applyWrite(offset, copy, options?.fua ?? false);
  }

  override async flush(): Promise<void> {
    this.alive();
    // Only writes that completed before the flush was issued become durable.
    const upTo = this.volatile.length;
    await this.track(this.writeChain.then(() => this.inner.flush()));
    this.alive();
    this.volatile = this.volatile.slice(upTo);
    this.stats.flushes++;
  }

  override async discard(offset: number, length: number): Promise<void> {
    // Contents after a discard are unspecified; modelling it as a no-op is within the contract.
    this.alive();
    void offset;
    void length;
  }

  override async writeZeroes(offset: number, length: number, options?: ZeroOptions): Promise<void> {
    this.alive();
    if (options?.fast) throw new NotSupportedError(`${this.name}: zeroing writes the zeroes, it is never fast`);
    if (hit(this.writeFaults, offset, length)) {
      this.stats.failedWrites++;
      throw new IoError(`${this.name}: injected write error at [${offset}, +${length})`);
    }
    await this.applyWrite(offset, Buffer.alloc(length), options?.fua ?? false);
  }

  override async extents?(offset: number, length: number): Promise<Extent[]> {
    this.alive();
    return super.extents!(offset, length);
  }

  override async grow?(size: number): Promise<void> {
    this.alive();
    await super.grow!(size);
  }

  override async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (!this.power.isCut) await this.inner.close();
  }

  /**
   * @internal — called by PowerDomain.cut(). Waits for in-flight inner I/O, then rewrites the inner
   * device to what a disk would hold: durable state plus the surviving parts of volatile writes.
   */
  async loseVolatileWrites(): Promise<void> {
    await Promise.allSettled([...this.inFlight]);
    const writes = this.volatile;
    this.volatile = [];
    // Back to the durable state: undo newest first.
    for (let i = writes.length - 1; i >= 0; i--) {
      const w = writes[i]!;
      await this.inner.write(w.offset, w.before);
    }
    // Then replay what survives, oldest first.
    const mode = this.power.mode;
    for (const w of writes) {
      const fate = mode === 'drop' ? 0 : mode === 'keep' ? 1 : this.power.random();
      if (fate < 1 / 3) continue; // lost
      if (fate >= 2 / 3 || mode === 'keep') {
        await this.inner.write(w.offset, w.after);
        continue;
      }
      // torn: each sector independently made it or not
      for (let s = 0; s < w.after.length; s += SECTOR) {
        if (this.power.random() < 0.5) await this.inner.write(w.offset + s, w.after.subarray(s, s + SECTOR));
      }
    }
  }

  private async applyWrite(offset: number, data: Buffer, fua: boolean): Promise<void> {
    const triggersCut = this.power.countWrite();
    const op = this.writeChain.then(async () => {
      this.alive();
      const before = await this.inner.read(offset, data.length);
      const entry: VolatileWrite = { offset, before, after: data };
      this.volatile.push(entry);
      await this.inner.write(offset, data);
      if (fua && !triggersCut) {
        await this.inner.flush();
        // A FUA write is durable on its own, whatever else is still volatile.
        this.volatile = this.volatile.filter((v) => v !== entry);
        // Older volatile writes it overlaps can no longer bring back what it replaced: losing
        // one leaves this data (not its stale before-image), keeping one must not overwrite it.
        for (const v of this.volatile) overlay(v, entry);
      }
    });
    this.writeChain = op.catch(() => undefined);
    this.stats.writes++;
    if (triggersCut) {
      await this.track(op).catch(() => undefined);
      await this.power.cut();
      throw new ShutdownError(`${this.name}: power cut during write at [${offset}, +${data.length})`);
    }
    await this.track(op);
    this.alive();
  }

  private track<T>(p: Promise<T>): Promise<T> {
    this.inFlight.add(p);
    const done = (): void => {
      this.inFlight.delete(p);
    };
    p.then(done, done);
    return p;
  }

  private alive(): void {
    if (this.power.isCut) throw new ShutdownError(`${this.name}: power is cut`);
    if (this.closed) throw new ShutdownError(`${this.name}: device is closed`);
  }
}

/** Copies `w`'s data into `v`'s before and after images where the two writes overlap. */
function overlay(v: VolatileWrite, w: VolatileWrite): void {
  const start = Math.max(v.offset, w.offset);
  const end = Math.min(v.offset + v.after.length, w.offset + w.after.length);
  if (start >= end) return;
  w.after.copy(v.before, start - v.offset, start - w.offset, end - w.offset);
  w.after.copy(v.after, start - v.offset, start - w.offset, end - w.offset);
}

function hit(faults: FaultRange[], offset: number, length: number): boolean {
  for (const f of faults) {
    if (f.remaining > 0 && offset < f.offset + f.length && f.offset < offset + Math.max(length, 1)) {
      f.remaining--;
      return true;
    }
  }
  return false;
}
