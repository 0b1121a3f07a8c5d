// Test fixtures for the llbitmap tests: a small fake BitmapHost (the array side of the contract)
// and a member device over MemoryDevice that records every write, keeps a separate image of
// what is durable (what survives a crash), and can hold or fail I/O on demand.

import { MemoryDevice } from '../../src/block/memory-device.js';
import type { WriteOptions } from '../../src/block/block-device.js';
import { IoError } from '../../src/block/errors.js';
import { FilterDevice } from '../../src/block/filter-device.js';
import type { BitmapHost, BitmapMember } from '../../src/md/write-intent-bitmap.js';

export const UUID = Uint8Array.from({ length: 16 }, (_, i) => 0x10 + i);
/** Where the bitmap area starts on every test member (sb at 4 KiB + bitmap_offset 8 sectors). */
export const BITMAP_OFFSET = 8192;

export interface WriteRecord {
  offset: number;
  length: number;
  fua: boolean;
}

/**
 * A member over MemoryDevice (`live`) with a volatile write cache: a FilterDevice that changes
 * read, write and flush (so no fast paths); discards and zeroing reach `live` only.
 */
export class RecordingDevice extends FilterDevice {
  /** What reads return: every completed write. */
  readonly live = this.inner as MemoryDevice;
  /** What a power cut leaves: FUA writes and writes followed by a completed flush. */
  readonly durableImage: Buffer;
  readonly durable: { read(o: number, l: number): Promise<Buffer>; write(o: number, d: Uint8Array): Promise<void> };
  readonly writes: WriteRecord[] = [];
  flushes = 0;
  reads = 0;
  failReads = false;
  failWrites = false;
  /** While set, writes and flushes wait for it. */
  hold: Promise<void> | null = null;
  private pending: { offset: number; data: Buffer }[] = [];

  constructor(size: number, blockSize = 512) {
    super(new MemoryDevice(size, { blockSize }));
    // A plain buffer, so a test can snapshot it synchronously, between two turns of the loop.
    const image = Buffer.alloc(size);
    this.durableImage = image;
    this.durable = {
      read: async (o, l) => Buffer.from(image.subarray(o, o + l)),
      write: async (o, d) => void image.set(d, o),
    };
  }

  override async read(offset: number, length: number): Promise<Buffer> {
    this.reads++;
    if (this.failReads) throw new IoError('injected read error');
    return this.live.read(offset, length);
  }

  override async write(offset: number, data: Uint8Array, options?: WriteOptions): Promise<void> {
    if (this.hold) await this.hold;
    if (this.failWrites) throw new IoError('injected write error');
    const copy = Buffer.from(data);
    this.writes.push({ offset, length: data.length, fua: options?.fua === true });
    await this.live.write(offset, copy);
    if (options?.fua) this.durableImage.set(copy, offset);
    else this.pending.push({ offset, data: copy });
  }

  override async flush(): Promise<void> {
    if (this.hold) await this.hold;
    if (this.failWrites) throw new IoError('injected flush error');
    this.flushes++;
    const pending = this.pending;
    this.pending = [];
    for (const p of pending) this.durableImage.set(p.data, p.offset);
  }

  /** Chunk state bytes as durable on this member: what a reload after a crash would see. */
  async durableChunks(first: number, count: number): Promise<number[]> {
    return [...(await this.durable.read(BITMAP_OFFSET + 1024 + first, count))];
  }

  async liveChunks(first: number, count: number): Promise<number[]> {
    return [...(await this.live.read(BITMAP_OFFSET + 1024 + first, count))];
  }
}

export class FakeHost implements BitmapHost {
  uuid: Uint8Array = UUID;
  parity: boolean;
  ev = 10n;
  degraded = false;
  syncRequests = 0;
  /** Calls to isDegraded: every daemon pass and state change asks, so this shows activity. */
  degradedCalls = 0;
  readonly members: BitmapMember[];
  readonly failed: { member: BitmapMember; err: Error }[] = [];

  constructor(devices: RecordingDevice[], parity = false) {
    this.parity = parity;
    this.members = devices.map((device, i) => ({ name: `/disks/d${i}/m.img`, device, bitmapOffset: BITMAP_OFFSET }));
  }

  events(): bigint {
    return this.ev;
  }
  isDegraded(): boolean {
    this.degradedCalls++;
    return this.degraded;
  }
  bitmapMembers(): readonly BitmapMember[] {
    return this.members.filter((m) => !this.failed.some((f) => f.member === m));
  }
  requestSync(): void {
    this.syncRequests++;
  }
  failMember(member: BitmapMember, err: Error): void {
    this.failed.push({ member, err });
  }
  /** A reassembly after a crash: the same members, nothing failed, fresh counters. */
  restart(): void {
    this.failed.length = 0;
    this.syncRequests = 0;
  }
}

/** Members whose live image is their durable one: the disks as they are after a power cut. */
export async function crash(devices: RecordingDevice[]): Promise<RecordingDevice[]> {
  const out: RecordingDevice[] = [];
  for (const d of devices) {
    const n = new RecordingDevice(d.size, d.blockSize);
    const image = await d.durable.read(0, d.size);
    await n.live.write(0, image);
    await n.durable.write(0, image);
    out.push(n);
  }
  return out;
}

/** Members rebuilt from durable images taken earlier (snapshots of durableImage). */
export async function fromImages(images: Buffer[], blockSize = 512): Promise<RecordingDevice[]> {
  const out: RecordingDevice[] = [];
  for (const image of images) {
    const n = new RecordingDevice(image.length, blockSize);
    await n.live.write(0, image);
    n.durableImage.set(image);
    out.push(n);
  }
  return out;
}

export function devices(n: number, size = 4 * 1024 * 1024, blockSize = 512): RecordingDevice[] {
  return Array.from({ length: n }, () => new RecordingDevice(size, blockSize));
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Resolves to 'pending' if `p` has not settled after the current turns of the event loop. */
export async function settled(p: Promise<unknown>): Promise<'resolved' | 'rejected' | 'pending'> {
  let state: 'resolved' | 'rejected' | 'pending' = 'pending';
  p.then(
    () => (state = 'resolved'),
    () => (state = 'rejected'),
  );
  await quiet();
  return state;
}

/**
 * 5 ms, and then every step scheduled for the end of a turn before now: a bitmap write-out starts
 * there (coalesced-flush.ts), and on a loaded machine a 5 ms timer can fire before an immediate
 * set in the turn that scheduled it (CI saw it).
 */
export async function quiet(): Promise<void> {
  await sleep(5);
  for (let i = 0; i < 4; i++) await new Promise((r) => setImmediate(r));
}
