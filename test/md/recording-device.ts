// A pass-through BlockDevice for array tests that records the byte ranges read and written, so a
// test can see which parts of a member an operation (a resync, a recovery) really touched.
// It changes nothing about the I/O; recording starts and stops under the test's control, and a
// test may hold writes to a range (`gate`) to order them against something else.

import type { BlockDevice, Extent, WriteOptions, ZeroOptions } from '../../src/block/block-device.js';

export interface TouchedRange {
  op: 'read' | 'write';
  offset: number;
  length: number;
}

export class RecordingDevice implements BlockDevice {
  readonly size: number;
  readonly blockSize: number;
  readonly readOnly: boolean;
  recording = true;
  readonly touched: TouchedRange[] = [];
  /** While set, writes starting in [from, to) wait for `open` before they start. */
  gate: { from: number; to: number; open: Promise<void> } | undefined;

  constructor(readonly inner: BlockDevice) {
    this.size = inner.size;
    this.blockSize = inner.blockSize;
    this.readOnly = inner.readOnly;
  }

  private note(op: 'read' | 'write', offset: number, length: number): void {
    if (this.recording && length > 0) this.touched.push({ op, offset, length });
  }

  read(offset: number, length: number): Promise<Buffer> {
    this.note('read', offset, length);
    return this.inner.read(offset, length);
  }

  async write(offset: number, data: Uint8Array, options?: WriteOptions): Promise<void> {
    this.note('write', offset, data.length);
    const gate = this.gate;
    if (gate !== undefined && offset >= gate.from && offset < gate.to) await gate.open;
    return this.inner.write(offset, data, options);
  }

  flush(): Promise<void> {
    return this.inner.flush();
  }

  discard(offset: number, length: number): Promise<void> {
    this.note('write', offset, length);
    return this.inner.discard(offset, length);
  }

  writeZeroes(offset: number, length: number, options?: ZeroOptions): Promise<void> {
    this.note('write', offset, length);
    return this.inner.writeZeroes(offset, length, options);
  }

  async extents(offset: number, length: number): Promise<Extent[]> {
    if (this.inner.extents) return this.inner.extents(offset, length);
    return [{ length, hole: false, zero: false }];
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
