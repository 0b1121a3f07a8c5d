// A pass-through BlockDevice for tests that records the requests reaching it: which byte ranges
// a user of the device (a resync, a recovery, the NBD server) really touched, and in what order
// writes and flushes completed. It changes nothing about the I/O, but a test may hold writes to a
// range (`gate`) to order them against something else. It records read() and write(), so it
// offers neither readInto, writev nor the fast paths (FilterDevice): every read and write of its
// user is seen.

import type { BlockDevice, Extent, WriteOptions, ZeroOptions } from '../../src/block/block-device.js';
import { isBlockError } from '../../src/block/errors.js';
import { FilterDevice } from '../../src/block/filter-device.js';

export interface IoRecord {
  op: 'read' | 'write' | 'discard' | 'zero' | 'flush';
  offset: number;
  length: number;
  fua: boolean;
}

export interface RecordingOptions {
  /**
   * Takes each request as it reaches the device, before the inner device sees it (so a request
   * that then fails is recorded too), instead of `touched`: for a long run that must not keep
   * them all.
   */
  onRequest?: (r: IoRecord) => void;
  /** Takes each request once the inner device completed it: the order things became true. */
  onComplete?: (r: IoRecord) => void;
}

export class RecordingDevice extends FilterDevice {
  /** While false nothing is recorded. */
  recording = true;
  /** The requests that reached the device, in arrival order (unless `onRequest` takes them). */
  readonly touched: IoRecord[] = [];
  /** Requests the inner device refused as invalid (EINVAL, ERANGE): a user that checks ranges makes none. */
  refused = 0;
  /** While set, writes starting in [from, to) wait for `open` before they start. */
  gate: { from: number; to: number; open: Promise<void> } | undefined;
  private readonly options: RecordingOptions;

  constructor(inner: BlockDevice, options: RecordingOptions = {}) {
    super(inner);
    this.options = options;
  }

  override read(offset: number, length: number): Promise<Buffer> {
    return this.record({ op: 'read', offset, length, fua: false }, () => super.read(offset, length));
  }

  override write(offset: number, data: Uint8Array, options?: WriteOptions): Promise<void> {
    return this.record({ op: 'write', offset, length: data.length, fua: options?.fua ?? false }, async () => {
      const gate = this.gate;
      if (gate !== undefined && offset >= gate.from && offset < gate.to) await gate.open;
      return super.write(offset, data, options);
    });
  }

  override flush(): Promise<void> {
    return this.record({ op: 'flush', offset: 0, length: 0, fua: false }, () => super.flush());
  }

  override discard(offset: number, length: number): Promise<void> {
    return this.record({ op: 'discard', offset, length, fua: false }, () => super.discard(offset, length));
  }

  override writeZeroes(offset: number, length: number, options?: ZeroOptions): Promise<void> {
    return this.record({ op: 'zero', offset, length, fua: options?.fua ?? false }, () => super.writeZeroes(offset, length, options));
  }

  override extents?(offset: number, length: number): Promise<Extent[]> {
    return this.watch(super.extents!(offset, length));
  }

  private record<T>(r: IoRecord, op: () => Promise<T>): Promise<T> {
    const recording = this.recording;
    if (recording) {
      if (this.options.onRequest) this.options.onRequest(r);
      else if (r.op !== 'flush' && r.length > 0) this.touched.push(r);
    }
    return this.watch(op()).then((value) => {
      if (recording) this.options.onComplete?.(r);
      return value;
    });
  }

  private watch<T>(p: Promise<T>): Promise<T> {
    return p.catch((err: unknown) => {
      if (isBlockError(err, 'ERANGE') || isBlockError(err, 'EINVAL')) this.refused++;
      throw err;
    });
  }
}
