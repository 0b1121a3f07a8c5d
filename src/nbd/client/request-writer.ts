// Encodes the client's requests onto the socket without copying payloads: a 28-byte header carved
// from a slab, then the caller's buffers as they are. Requests made in one turn of the event loop
// (many callers, or one split request) leave in one writev: the socket is corked at the first and
// uncorked once the turn's promise callbacks have run. While the socket wants draining, requests
// wait here, in order, and go out on 'drain'.

import type { Socket } from 'node:net';
import { REQUEST_MAGIC, REQUEST_SIZE } from '../protocol.js';

const SLAB_SIZE = 64 * 1024;

interface Queued {
  header: Buffer;
  payload: readonly Uint8Array[] | undefined;
}

export class RequestWriter {
  /** Headers are views of `slab`; bytes before `slabUsed` may still be queued in the socket. */
  private slab = Buffer.allocUnsafe(SLAB_SIZE);
  private slabUsed = 0;
  private corked = false;
  /** Requests held back while the socket needs draining; empty whenever it does not. */
  private readonly waiting: Queued[] = [];
  private readonly uncork = (): void => {
    this.corked = false;
    this.socket.uncork();
  };

  constructor(private readonly socket: Socket) {
    socket.on('drain', () => this.onDrain());
  }

  /** Queues one request; `payload` (a WRITE's data) is referenced until the socket has sent it. */
  send(type: number, flags: number, cookie: number, offset: number, length: number, payload?: readonly Uint8Array[]): void {
    const h = this.carve();
    h.writeUInt32BE(REQUEST_MAGIC, 0);
    h.writeUInt16BE(flags, 4);
    h.writeUInt16BE(type, 6);
    h.writeUInt32BE(0, 8);
    h.writeUInt32BE(cookie, 12);
    h.writeUInt32BE(Math.floor(offset / 0x100000000), 16);
    h.writeUInt32BE(offset % 0x100000000, 20);
    h.writeUInt32BE(length, 24);
    if (this.waiting.length > 0 || this.socket.writableNeedDrain) {
      this.waiting.push({ header: h, payload });
      return;
    }
    this.write(h, payload);
  }

  /** Requests held back for 'drain' (not yet handed to the socket). */
  get held(): number {
    return this.waiting.length;
  }

  private write(header: Buffer, payload: readonly Uint8Array[] | undefined): void {
    if (this.socket.destroyed) return;
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      process.nextTick(this.uncork);
    }
    this.socket.write(header);
    if (payload !== undefined) for (const part of payload) this.socket.write(part);
  }

  private onDrain(): void {
    let i = 0;
    while (i < this.waiting.length && !this.socket.writableNeedDrain) {
      const q = this.waiting[i++]!;
      this.write(q.header, q.payload);
    }
    this.waiting.splice(0, i);
  }

  private carve(): Buffer {
    if (this.slabUsed + REQUEST_SIZE > this.slab.length) {
      // The old slab stays alive as long as queued writes reference it.
      this.slab = Buffer.allocUnsafe(SLAB_SIZE);
      this.slabUsed = 0;
    }
    const h = this.slab.subarray(this.slabUsed, this.slabUsed + REQUEST_SIZE);
    this.slabUsed += REQUEST_SIZE;
    return h;
  }
}
