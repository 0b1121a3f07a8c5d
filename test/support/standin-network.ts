// Remote members without a network, for md tests: a StandInNetwork holds member stores (memory
// devices) by URI-like name and hands out "connections" to them through a MemberOpener, as the
// engine's NBD client would. The network can be unplugged (every connection fails, opens are
// refused, or both hang until the client's deadline), plugged back (the same data is there), or
// a member fenced (as the member service answers an engine whose epoch was overtaken).

import type { BlockDevice, WriteOptions, ZeroOptions } from '../../src/block/block-device.js';
import { FencedError, IoError, ShutdownError, TimeoutError } from '../../src/block/errors.js';
import { FilterDevice } from '../../src/block/filter-device.js';
import { MemoryDevice } from '../../src/block/memory-device.js';
import type { MemberOpener } from '../../src/md/index.js';

/** Where md puts a member's data area (mdadm 1.2): what lies below is superblock and bitmap. */
const DATA_OFFSET = 2048 * 512;

/** What reached one member's store through any of its connections. */
export interface WireCounters {
  reads: number;
  readBytes: number;
  writes: number;
  writeBytes: number;
  /** Bytes written to the data area (not the superblock or bitmap). */
  dataWriteBytes: number;
  /** Bytes read from the data area. */
  dataReadBytes: number;
}

/** How an unplugged network fails: at once (a reset), or by never answering (a cut link). */
export type UnplugMode = 'reset' | 'hang';

interface Store {
  device: MemoryDevice;
  counters: WireCounters;
  /** Set: every connection to it rejects with FencedError. */
  fenced: string | undefined;
}

const zero = (): WireCounters => ({ reads: 0, readBytes: 0, writes: 0, writeBytes: 0, dataWriteBytes: 0, dataReadBytes: 0 });

export class StandInNetwork {
  private readonly stores = new Map<string, Store>();
  private readonly connections = new Set<Connection>();
  /** Undefined while plugged in. */
  unplugged: UnplugMode | undefined;
  /** What a hanging request waits before it times out, as the NBD client's timeoutMs. */
  timeoutMs = 200;
  /** Opens refused or not (counted), for tests of the return check's pace. */
  opens = 0;

  /** A member store called `name` (say `test://b`), `size` bytes, zeroes. */
  addMember(name: string, size: number): void {
    this.stores.set(name, { device: new MemoryDevice(size, { name }), counters: zero(), fenced: undefined });
  }

  counters(name: string): WireCounters {
    return this.store(name).counters;
  }

  /** Zeroes the counters of `name` (from here on). */
  resetCounters(name: string): void {
    Object.assign(this.store(name).counters, zero());
  }

  /** The bytes the member's store holds, bypassing every connection (what its disk holds). */
  raw(name: string): BlockDevice {
    return this.store(name).device;
  }

  /** The link goes down: every connection fails its requests from now on; opens fail too. */
  unplug(mode: UnplugMode = 'reset'): void {
    this.unplugged = mode;
    for (const c of this.connections) c.drop();
  }

  /** The link is back: new connections work (the old ones stay dead, as TCP connections would). */
  replug(): void {
    this.unplugged = undefined;
  }

  /** Another engine took `name`: its connections answer FencedError from now on. */
  fence(name: string, why = `fenced: member ${name} taken with a higher epoch`): void {
    this.store(name).fenced = why;
  }

  /** The opener an array is given: claims the names of this network's members. */
  readonly opener: MemberOpener = async (name, mode) => {
    const store = this.stores.get(name);
    if (store === undefined) return undefined;
    this.opens++;
    await this.link(`open ${name}`);
    if (store.fenced !== undefined) throw new FencedError(store.fenced);
    const c = new Connection(this, store, name, mode.readOnly);
    this.connections.add(c);
    return { device: c, writeMostly: true, remote: true };
  };

  /** Resolves while plugged in; rejects as the unplugged link would. */
  async link(what: string): Promise<void> {
    if (this.unplugged === 'reset') throw new IoError(`${what}: connection reset`);
    if (this.unplugged === 'hang') {
      await new Promise((resolve) => setTimeout(resolve, this.timeoutMs));
      throw new TimeoutError(`${what}: no answer within ${this.timeoutMs} ms`);
    }
  }

  /** @internal */
  forget(c: Connection): void {
    this.connections.delete(c);
  }

  private store(name: string): Store {
    const s = this.stores.get(name);
    if (s === undefined) throw new Error(`no member ${name} on this network`);
    return s;
  }
}

/**
 * One client connection to a member store: like the NBD client, once it fails it stays failed
 * (every later request rejects), and closing it leaves the store alone.
 */
class Connection extends FilterDevice {
  private failed: Error | undefined;

  constructor(
    private readonly net: StandInNetwork,
    private readonly store: Store,
    private readonly name: string,
    private readonly ro: boolean,
  ) {
    super(store.device);
  }

  override get readOnly(): boolean {
    return this.ro;
  }

  drop(): void {
    this.failed ??= new ShutdownError(`${this.name}: connection lost`);
  }

  private async gate(what: string): Promise<void> {
    if (this.store.fenced !== undefined) throw new FencedError(this.store.fenced);
    if (this.failed) throw this.failed;
    try {
      await this.net.link(`${this.name}: ${what}`);
    } catch (err) {
      this.failed ??= err as Error;
      throw err;
    }
    // The link may have gone while the request waited.
    if (this.failed) throw this.failed;
  }

  override async read(offset: number, length: number): Promise<Buffer> {
    await this.gate('read');
    const data = await super.read(offset, length);
    const c = this.store.counters;
    c.reads++;
    c.readBytes += length;
    if (offset >= DATA_OFFSET) c.dataReadBytes += length;
    return data;
  }

  override async write(offset: number, data: Uint8Array, options?: WriteOptions): Promise<void> {
    await this.gate('write');
    await super.write(offset, data, options);
    this.count(offset, data.length);
  }

  override async writeZeroes(offset: number, length: number, options?: ZeroOptions): Promise<void> {
    await this.gate('write zeroes');
    await super.writeZeroes(offset, length, options);
    this.count(offset, length);
  }

  override async discard(offset: number, length: number): Promise<void> {
    await this.gate('discard');
    await super.discard(offset, length);
  }

  override async flush(): Promise<void> {
    await this.gate('flush');
    await super.flush();
  }

  override async close(): Promise<void> {
    this.failed ??= new ShutdownError(`${this.name}: closed`);
    this.net.forget(this);
  }

  private count(offset: number, length: number): void {
    const c = this.store.counters;
    c.writes++;
    c.writeBytes += length;
    if (offset >= DATA_OFFSET) c.dataWriteBytes += length;
  }
}
