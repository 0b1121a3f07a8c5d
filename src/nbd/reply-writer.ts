// Encodes transmission-phase replies (simple or structured) onto a connection's socket.
// Replies completed in one turn of the event loop leave in one writev: the socket is corked at
// the first reply and uncorked from setImmediate, after every I/O callback of that turn has run.
// Headers are carved from a slab rather than allocated one by one, and a full slab is used again
// once the socket has handed all of its headers to the kernel: a fresh 64 KiB slab per 4096
// replies was garbage V8 collects late (3 MiB a second at 100k requests a second).

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
  private slab: Buffer = Buffer.allocUnsafeSlow(SLAB_SIZE);
  private slabUsed = 0;
  /** Writes of the current slab's headers the socket has not finished. */
  private slabWrites = 0;
  /** The slab before the current one, and its unfinished writes: it becomes current again at 0. */
  private spare: Buffer | undefined;
  private spareWrites = 0;
  /**
   * Start of the headers carved but not yet handed to the socket, [held, slabUsed), or -1.
   * Back-to-back headers (WRITE, FLUSH and TRIM replies) go to the socket as one buffer: a
   * socket.write per 16-byte reply cost more than the reply.
   */
  private held = -1;
  private readonly uncork = (): void => {
    this.corked = false;
    this.flush();
    this.socket.uncork();
  };

  constructor(private readonly socket: Socket) {}

  /** Success of a command without reply payload. */
  ok(cookieHi: number, cookieLo: number): void {
    if (!this.structured) return this.simple(cookieHi, cookieLo, 0);
    this.sendHeader(this.chunkHeader(0, cookieHi, cookieLo, REPLY_TYPE_NONE, 0));
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
    const at = this.chunkHeader(8, cookieHi, cookieLo, REPLY_TYPE_OFFSET_DATA, 8 + data.length);
    writeU64(this.slab, at + STRUCTURED_REPLY_HEADER_SIZE, offset);
    this.sendHeader(at);
    this.send(data, sent);
  }

  /** Failure of any command. A simple error reply carries no payload, not even for READ. */
  error(cookieHi: number, cookieLo: number, errno: number, message: string): void {
    if (!this.structured) return this.simple(cookieHi, cookieLo, errno);
    let msg = Buffer.from(message, 'utf8');
    if (msg.length > MAX_MESSAGE) msg = msg.subarray(0, MAX_MESSAGE);
    const at = this.chunkHeader(6, cookieHi, cookieLo, REPLY_TYPE_ERROR, 6 + msg.length);
    this.slab.writeUInt32BE(errno, at + STRUCTURED_REPLY_HEADER_SIZE);
    this.slab.writeUInt16BE(msg.length, at + STRUCTURED_REPLY_HEADER_SIZE + 4);
    this.sendHeader(at);
    if (msg.length > 0) this.send(msg);
  }

  /**
   * One BLOCK_STATUS chunk: `descriptors` holds (length, flags) pairs. A reply carries one chunk
   * per selected meta context; only the last has `done`.
   */
  blockStatus(cookieHi: number, cookieLo: number, contextId: number, descriptors: Uint32Array, done = true): void {
    const body = Buffer.allocUnsafe(4 + descriptors.length * 4);
    body.writeUInt32BE(contextId, 0);
    for (let i = 0; i < descriptors.length; i++) body.writeUInt32BE(descriptors[i]!, 4 + i * 4);
    this.sendHeader(this.chunkHeader(0, cookieHi, cookieLo, REPLY_TYPE_BLOCK_STATUS, body.length, done ? REPLY_FLAG_DONE : 0));
    this.send(body);
  }

  private simple(cookieHi: number, cookieLo: number, errno: number): void {
    const at = this.carve(SIMPLE_REPLY_SIZE);
    const h = this.slab;
    h.writeUInt32BE(SIMPLE_REPLY_MAGIC, at);
    h.writeUInt32BE(errno, at + 4);
    h.writeUInt32BE(cookieHi, at + 8);
    h.writeUInt32BE(cookieLo, at + 12);
    this.sendHeader(at);
  }

  /**
   * A chunk header, DONE unless told (every reply but BLOCK_STATUS's is one chunk), and `extra`
   * bytes after it: where it starts in the slab.
   */
  private chunkHeader(extra: number, cookieHi: number, cookieLo: number, type: number, length: number, flags = REPLY_FLAG_DONE): number {
    const at = this.carve(STRUCTURED_REPLY_HEADER_SIZE + extra);
    const h = this.slab;
    h.writeUInt32BE(STRUCTURED_REPLY_MAGIC, at);
    h.writeUInt16BE(flags, at + 4);
    h.writeUInt16BE(type, at + 6);
    h.writeUInt32BE(cookieHi, at + 8);
    h.writeUInt32BE(cookieLo, at + 12);
    h.writeUInt32BE(length, at + 16);
    return at;
  }

  /** Hands the held headers to the socket (before anything written after them, and before end()). */
  flush(): void {
    if (this.held < 0) return;
    const from = this.held;
    this.held = -1;
    if (this.socket.destroyed) return;
    const slab = this.slab;
    this.slabWrites++;
    this.socket.write(slab.subarray(from, this.slabUsed), () => {
      if (slab === this.slab) this.slabWrites--;
      else if (slab === this.spare) this.spareWrites--;
    });
  }

  /**
   * `n` bytes of the current slab for a header: where they start. Written in place through the
   * slab (a view per header was a typed array made, and its buffer looked up, per reply).
   */
  private carve(n: number): number {
    if (this.slabUsed + n > this.slab.length) {
      this.flush();
      // The full slab becomes the spare; the spare comes back if the socket is done with it,
      // else a new slab is made (the old spare stays alive while queued writes reference it).
      const [full, fullWrites] = [this.slab, this.slabWrites];
      this.slab = this.spare !== undefined && this.spareWrites === 0 ? this.spare : Buffer.allocUnsafeSlow(SLAB_SIZE);
      this.slabWrites = 0;
      this.spare = full;
      this.spareWrites = fullWrites;
      this.slabUsed = 0;
    }
    const at = this.slabUsed;
    this.slabUsed += n;
    return at;
  }

  /** Queues the header just carved at `at`: it joins the held run (see `held`). */
  private sendHeader(at: number): void {
    if (this.socket.destroyed) return;
    this.corkForTurn();
    if (this.held < 0) this.held = at;
  }

  private send(b: Buffer, sent?: () => void): void {
    if (this.socket.destroyed) return;
    this.corkForTurn();
    this.flush();
    if (sent === undefined) this.socket.write(b);
    else this.socket.write(b, (err) => err === undefined || err === null ? sent() : undefined);
  }

  private corkForTurn(): void {
    if (this.corked) return;
    this.corked = true;
    this.socket.cork();
    setImmediate(this.uncork);
  }
}

export function writeU64(b: Buffer, at: number, value: number): void {
  b.writeUInt32BE(Math.floor(value / 0x100000000), at);
  b.writeUInt32BE(value % 0x100000000, at + 4);
}
