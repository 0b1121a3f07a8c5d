// A pass-through BlockDevice that counts what its users asked of it, by kind: the I/O numbers an
// engine reports for its volume (metrics). Requests that fail are not counted; nothing else is
// changed about them.

import type { WriteOptions, ZeroOptions } from './block-device.js';
import { FilterDevice } from './filter-device.js';

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

/**
 * Counts every way of reading and writing, readInto, writev and the synchronous fast paths
 * included, so each is offered exactly when the inner device offers it (FilterDevice): a caller
 * choosing between them (the NBD server) sees what the inner device does.
 */
export class CountingDevice extends FilterDevice {
  readonly counters: IoCounters = {
    readOps: 0, readBytes: 0, writeOps: 0, writeBytes: 0, flushOps: 0, discardOps: 0, discardBytes: 0, zeroOps: 0, zeroBytes: 0,
  };

  override async read(offset: number, length: number): Promise<Buffer> {
    const data = await super.read(offset, length);
    this.countRead(length);
    return data;
  }

  override async readInto?(offset: number, out: Buffer): Promise<void> {
    await super.readInto!(offset, out);
    this.countRead(out.length);
  }

  override readNow?(offset: number, out: Buffer): boolean {
    if (!super.readNow!(offset, out)) return false;
    this.countRead(out.length);
    return true;
  }

  override async write(offset: number, data: Uint8Array, options?: WriteOptions): Promise<void> {
    await super.write(offset, data, options);
    this.countWrite([data]);
  }

  override async writev?(offset: number, parts: readonly Uint8Array[], options?: WriteOptions): Promise<void> {
    await super.writev!(offset, parts, options);
    this.countWrite(parts);
  }

  override writeNow?(offset: number, parts: readonly Uint8Array[], options?: WriteOptions): boolean {
    if (!super.writeNow!(offset, parts, options)) return false;
    this.countWrite(parts);
    return true;
  }

  override async flush(): Promise<void> {
    await super.flush();
    this.counters.flushOps++;
  }

  override async discard(offset: number, length: number): Promise<void> {
    await super.discard(offset, length);
    this.counters.discardOps++;
    this.counters.discardBytes += length;
  }

  override async writeZeroes(offset: number, length: number, options?: ZeroOptions): Promise<void> {
    await super.writeZeroes(offset, length, options);
    this.counters.zeroOps++;
    this.counters.zeroBytes += length;
  }

  private countRead(bytes: number): void {
    this.counters.readOps++;
    this.counters.readBytes += bytes;
  }

  private countWrite(parts: readonly Uint8Array[]): void {
    this.counters.writeOps++;
    for (const p of parts) this.counters.writeBytes += p.length;
  }
}
