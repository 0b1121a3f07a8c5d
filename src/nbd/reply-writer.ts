// Encodes transmission-phase replies (simple or structured) onto a connection's socket.
// Replies completed in one turn of the event loop leave in one writev: the socket is corked at
// the first reply and uncorked from setImmediate, after every I/O callback of that turn has run.
// Headers are carved from a slab rather than allocated one by one.

import type { Socket } from 'node:net';
import {
  REPLY_FLAG_DONE,
  REPLY_TYPE_BLOCK_STATUS,
  REPLY_TYPE_ERROR,
  REPLY_TYPE_NONE,
  REPLY_TYPE_OFFSET_DATA,
  SIMPLE_REPLY_MAGIC,
  SIMPLE_REPLY_SIZE,
  STRUCTURED_REPLY_HEADER_SIZE,
  STRUCTURED_REPLY_MAGIC,
} from './protocol.js';

const SLAB_SIZE = 64 * 1024;
/** Error messages in structured error chunks are cut to this many bytes. */
const MAX_MESSAGE = 1024;

export class ReplyWriter {
  /** Set once NBD_OPT_STRUCTURED_REPLY was acknowledged; fixed for the whole transmission phase. */
  structured = false;
  private corked = false;
  /** Headers are views of `slab`; bytes before `slabUsed` may still be queued in the socket. */
  private slab = Buffer.allocUnsafe(SLAB_SIZE);
  private slabUsed = 0;
  private readonly uncork = (): void => {
    this.corked = false;
    this.socket.uncork();
  };

  constructor(private readonly socket: Socket) {}

  /** Success of a command without reply payload. */
  ok(cookieHi: number, cookieLo: number): void {
    if (!this.structured) return this.simple(cookieHi, cookieLo, 0);
    const h = this.chunkHeader(0, cookieHi, cookieLo, REPLY_TYPE_NONE, 0);
    this.send(h);
  }

  /**
   * Success of a READ: the data at `offset`. `sent` is called once the socket no longer needs
   * `data` (it has gone to the kernel), so the caller may reuse the buffer; never if the
   * connection is gone first.
   */
  data(cookieHi: number, cookieLo: number, offset: number, data: Buffer, sent?: () => void): void {
    if (!this.structured) {
      this.simple(cookieHi, cookieLo, 0);
      this.send(data, sent);
      return;
    }
    const h = this.chunkHeader(8, cookieHi, cookieLo, REPLY_TYPE_OFFSET_DATA, 8 + data.length);
    writeU64(h, STRUCTURED_REPLY_HEADER_SIZE, offset);
    this.send(h);
    this.send(data, sent);
  }

  /** Failure of any command. A simple error reply carries no payload, not even for READ. */
  error(cookieHi: number, cookieLo: number, errno: number, message: string): void {
    if (!this.structured) return this.simple(cookieHi, cookieLo, errno);
    let msg = Buffer.from(message, 'utf8');
    if (msg.length > MAX_MESSAGE) msg = msg.subarray(0, MAX_MESSAGE);
    const h = this.chunkHeader(6, cookieHi, cookieLo, REPLY_TYPE_ERROR, 6 + msg.length);
    h.writeUInt32BE(errno, STRUCTURED_REPLY_HEADER_SIZE);
    h.writeUInt16BE(msg.length, STRUCTURED_REPLY_HEADER_SIZE + 4);
    this.send(h);
    if (msg.length > 0) this.send(msg);
  }

  /** One BLOCK_STATUS chunk: `descriptors` holds (length, flags) pairs. */
  blockStatus(cookieHi: number, cookieLo: number, contextId: number, descriptors: Uint32Array): void {
    const body = Buffer.allocUnsafe(4 + descriptors.length * 4);
    body.writeUInt32BE(contextId, 0);
    for (let i = 0; i < descriptors.length; i++) body.writeUInt32BE(descriptors[i]!, 4 + i * 4);
    const h = this.chunkHeader(0, cookieHi, cookieLo, REPLY_TYPE_BLOCK_STATUS, body.length);
    this.send(h);
    this.send(body);
  }

  private simple(cookieHi: number, cookieLo: number, errno: number): void {
    const h = this.carve(SIMPLE_REPLY_SIZE);
    h.writeUInt32BE(SIMPLE_REPLY_MAGIC, 0);
    h.writeUInt32BE(errno, 4);
    h.writeUInt32BE(cookieHi, 8);
    h.writeUInt32BE(cookieLo, 12);
    this.send(h);
  }

  /** A chunk header with DONE set (every reply is a single chunk) and `extra` bytes after it. */
  private chunkHeader(extra: number, cookieHi: number, cookieLo: number, type: number, length: number): Buffer {
    const h = this.carve(STRUCTURED_REPLY_HEADER_SIZE + extra);
    h.writeUInt32BE(STRUCTURED_REPLY_MAGIC, 0);
    h.writeUInt16BE(REPLY_FLAG_DONE, 4);
    h.writeUInt16BE(type, 6);
    h.writeUInt32BE(cookieHi, 8);
    h.writeUInt32BE(cookieLo, 12);
    h.writeUInt32BE(length, 16);
    return h;
  }

  private carve(n: number): Buffer {
    if (this.slabUsed + n > this.slab.length) {
      // The old slab stays alive as long as queued writes reference it.
      this.slab = Buffer.allocUnsafe(SLAB_SIZE);
      this.slabUsed = 0;
    }
    const h = this.slab.subarray(this.slabUsed, this.slabUsed + n);
    this.slabUsed += n;
    return h;
  }

  private send(b: Buffer, sent?: () => void): void {
    if (this.socket.destroyed) return;
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      setImmediate(this.uncork);
    }
    if (sent === undefined) this.socket.write(b);
    else this.socket.write(b, (err) => err === undefined || err === null ? sent() : undefined);
  }
}

export function writeU64(b: Buffer, at: number, value: number): void {
  b.writeUInt32BE(Math.floor(value / 0x100000000), at);
  b.writeUInt32BE(value % 0x100000000, at + 4);
}
