// The client's transmission-phase reply parser: a state machine fed the socket's chunks as they
// come, copying READ data straight into the caller's buffer (one copy, no queue of chunks).
//
//   MAGIC(4) ─simple─► SIMPLE(16) ─READ ok─► DATA(length) ─────────────────────────► MAGIC
//            └struct─► CHUNK(20) ─OFFSET_DATA─► DATA_OFFSET(+8) ─► DATA(length-8) ─► MAGIC
//                                ─OFFSET_HOLE─► HOLE(+12) ───────────────────────► MAGIC
//                                ─ERROR*, BLOCK_STATUS─► PAYLOAD(length) ────────► MAGIC
//                                ─NONE─────────────────────────────────────────► MAGIC
// Every field is checked against the request it answers; anything proto.md does not allow (an
// unknown cookie, a chunk outside the READ, a structured reply never negotiated) breaks the
// stream for good: the device is failed, nothing is guessed.

import {
  CMD_BLOCK_STATUS,
  CMD_READ,
  MAX_STATUS_DESCRIPTORS,
  REPLY_FLAG_DONE,
  REPLY_TYPE_BLOCK_STATUS,
  REPLY_TYPE_ERROR_BIT,
  REPLY_TYPE_NONE,
  REPLY_TYPE_OFFSET_DATA,
  REPLY_TYPE_OFFSET_HOLE,
  SIMPLE_REPLY_MAGIC,
  SIMPLE_REPLY_SIZE,
  STATE_HOLE,
  STATE_ZERO,
  STRUCTURED_REPLY_HEADER_SIZE,
  STRUCTURED_REPLY_MAGIC,
  commandName,
} from '../protocol.js';
import type { PendingRequest } from './request-table.js';

/** An error chunk carries a 16-bit message length; anything longer is not an error chunk. */
const MAX_ERROR_PAYLOAD = 6 + 0xffff + 8;
const MAX_STATUS_PAYLOAD = 4 + 8 * MAX_STATUS_DESCRIPTORS;

export interface ReplySink {
  /** The request a reply names, or undefined for a cookie not in flight. */
  request(cookieHi: number, cookieLo: number): PendingRequest | undefined;
  /** The request's last chunk arrived (errno set if the server failed it). */
  done(p: PendingRequest): void;
  /** The stream broke the protocol; nothing more is parsed. */
  broken(message: string): void;
}

const enum Stage {
  Magic,
  Simple,
  Chunk,
  DataOffset,
  Hole,
  Data,
  Payload,
  Broken,
}

export class ReplyParser {
  private stage = Stage.Magic;
  /** Header bytes collected in `head`, and how many the current stage needs there. */
  private have = 0;
  private need = 4;
  private readonly head = Buffer.alloc(STRUCTURED_REPLY_HEADER_SIZE + 12);
  /** The request the current reply answers (every stage after SIMPLE/CHUNK). */
  private current: PendingRequest | undefined;
  private chunkFlags = 0;
  private chunkType = 0;
  private chunkLength = 0;
  /** DATA: where the bytes go and how many are still due; PAYLOAD: the buffer being filled. */
  private dest: Buffer | undefined;
  private destAt = 0;
  private left = 0;

  constructor(
    private readonly sink: ReplySink,
    /** Structured replies were negotiated: chunks are allowed. */
    private readonly structured: boolean,
    /** The `base:allocation` context id, if negotiated. */
    private readonly allocationContext: number | undefined,
  ) {}

  /** Parses `chunk` in full; keeps no reference to it afterwards. */
  push(chunk: Buffer): void {
    let pos = 0;
    const end = chunk.length;
    while (pos < end) {
      switch (this.stage) {
        case Stage.Data:
        case Stage.Payload: {
          const n = Math.min(this.left, end - pos);
          chunk.copy(this.dest!, this.destAt, pos, pos + n);
          pos += n;
          this.destAt += n;
          this.left -= n;
          if (this.left === 0) {
            if (this.stage === Stage.Data) this.endChunk();
            else this.onPayload(this.dest!);
          }
          break;
        }
        case Stage.Broken:
          return;
        default: {
          const n = Math.min(this.need - this.have, end - pos);
          chunk.copy(this.head, this.have, pos, pos + n);
          pos += n;
          this.have += n;
          if (this.have === this.need) this.onHead();
        }
      }
    }
  }

  /** Whether the parser sits between replies (nothing half-read). */
  get idle(): boolean {
    return this.stage === Stage.Magic && this.have === 0;
  }

  private onHead(): void {
    const h = this.head;
    switch (this.stage) {
      case Stage.Magic: {
        const magic = h.readUInt32BE(0);
        if (magic === SIMPLE_REPLY_MAGIC) {
          this.stage = Stage.Simple;
          this.need = SIMPLE_REPLY_SIZE;
        } else if (magic === STRUCTURED_REPLY_MAGIC && this.structured) {
          this.stage = Stage.Chunk;
          this.need = STRUCTURED_REPLY_HEADER_SIZE;
        } else if (magic === STRUCTURED_REPLY_MAGIC) {
          this.break('a structured reply, though structured replies were not negotiated');
        } else {
          this.break(`expected a reply magic, found 0x${magic.toString(16).padStart(8, '0')}`);
        }
        return;
      }
      case Stage.Simple: {
        const p = this.find(h.readUInt32BE(8), h.readUInt32BE(12));
        if (p === undefined) return;
        const errno = h.readUInt32BE(4);
        if (errno !== 0 || p.type !== CMD_READ || p.length === 0) {
          // proto.md: after a simple error reply "the server ... MUST NOT send any payload".
          p.errno = errno;
          if (errno === 0 && p.type === CMD_READ) p.covered = p.length;
          this.finish(p);
          return;
        }
        this.chunkFlags = REPLY_FLAG_DONE;
        this.startData(p, 0, p.length);
        return;
      }
      case Stage.Chunk: {
        const p = this.find(h.readUInt32BE(8), h.readUInt32BE(12));
        if (p === undefined) return;
        this.chunkFlags = h.readUInt16BE(4);
        this.chunkType = h.readUInt16BE(6);
        this.chunkLength = h.readUInt32BE(16);
        this.onChunk(p);
        return;
      }
      case Stage.DataOffset: {
        const p = this.current!;
        const at = this.within(p, readU64(h, 20), this.chunkLength - 8);
        if (at >= 0) this.startData(p, at, this.chunkLength - 8);
        return;
      }
      case Stage.Hole: {
        const p = this.current!;
        const size = h.readUInt32BE(28);
        const at = this.within(p, readU64(h, 20), size);
        if (at < 0) return;
        p.dest!.fill(0, at, at + size);
        p.covered += size;
        this.endChunk();
        return;
      }
      default:
        return;
    }
  }

  private onChunk(p: PendingRequest): void {
    const type = this.chunkType;
    const length = this.chunkLength;
    const what = `${commandName(p.type)} reply chunk of type ${type}`;
    if (type === REPLY_TYPE_NONE) {
      // proto.md: NONE "MUST be the final chunk" and has no payload.
      if (length !== 0 || (this.chunkFlags & REPLY_FLAG_DONE) === 0) return this.break(`${what} must be empty and final, found ${length} bytes, flags 0x${this.chunkFlags.toString(16)}`);
      return this.endChunk();
    }
    if (type === REPLY_TYPE_OFFSET_DATA) {
      if (p.type !== CMD_READ || length <= 8) return this.break(`${what} with ${length} bytes: expected a READ and more than 8 bytes`);
      this.stage = Stage.DataOffset;
      this.need = STRUCTURED_REPLY_HEADER_SIZE + 8;
      return;
    }
    if (type === REPLY_TYPE_OFFSET_HOLE) {
      if (p.type !== CMD_READ || length !== 12) return this.break(`${what} with ${length} bytes: expected a READ and 12 bytes`);
      this.stage = Stage.Hole;
      this.need = STRUCTURED_REPLY_HEADER_SIZE + 12;
      return;
    }
    if (type === REPLY_TYPE_BLOCK_STATUS) {
      if (p.type !== CMD_BLOCK_STATUS || length < 12 || (length - 4) % 8 !== 0 || length > MAX_STATUS_PAYLOAD) {
        return this.break(`${what} with ${length} bytes: expected a BLOCK_STATUS request, a context id and whole descriptors`);
      }
      return this.startPayload(length);
    }
    // proto.md: a client MUST treat an unknown type with bit 15 set as an error chunk.
    if ((type & REPLY_TYPE_ERROR_BIT) !== 0) {
      if (length < 6 || length > MAX_ERROR_PAYLOAD) return this.break(`${what} with ${length} bytes: an error chunk needs 6 to ${MAX_ERROR_PAYLOAD}`);
      return this.startPayload(length);
    }
    this.break(`${what}, which this client does not know`);
  }

  private onPayload(payload: Buffer): void {
    const p = this.current!;
    if (this.chunkType === REPLY_TYPE_BLOCK_STATUS) {
      if (payload.readUInt32BE(0) === this.allocationContext && p.extents !== undefined) {
        for (let at = 4; at < payload.length; at += 8) {
          const length = payload.readUInt32BE(at);
          const flags = payload.readUInt32BE(at + 4);
          if (length === 0) return this.break('a BLOCK_STATUS descriptor of length 0');
          p.extents.push({ length, hole: (flags & STATE_HOLE) !== 0, zero: (flags & STATE_ZERO) !== 0 });
        }
      }
      return this.endChunk();
    }
    const errno = payload.readUInt32BE(0);
    const messageLength = payload.readUInt16BE(4);
    if (errno === 0) return this.break(`an error chunk with error number 0 for ${commandName(p.type)}`);
    if (6 + messageLength > payload.length) return this.break(`an error chunk whose message (${messageLength} bytes) runs past its ${payload.length} bytes`);
    if (p.errno === 0) {
      p.errno = errno;
      p.message = payload.toString('utf8', 6, 6 + messageLength);
    }
    this.endChunk();
  }

  private find(cookieHi: number, cookieLo: number): PendingRequest | undefined {
    const p = this.sink.request(cookieHi, cookieLo);
    if (p === undefined) this.break(`a reply for cookie 0x${cookieHi.toString(16)}${cookieLo.toString(16).padStart(8, '0')}, which no request in flight has`);
    this.current = p;
    return p;
  }

  /** The index in `p.dest` of [offset, offset+length), or -1 (and broken) outside the READ. */
  private within(p: PendingRequest, offset: number, length: number): number {
    const at = offset - p.offset;
    if (at < 0 || length <= 0 || at + length > p.length) {
      this.break(`a READ reply chunk for [${offset}, +${length}) outside the request [${p.offset}, +${p.length})`);
      return -1;
    }
    return at;
  }

  private startData(p: PendingRequest, at: number, length: number): void {
    p.covered += length;
    this.dest = p.dest;
    this.destAt = at;
    this.left = length;
    this.stage = Stage.Data;
  }

  private startPayload(length: number): void {
    this.dest = Buffer.allocUnsafe(length);
    this.destAt = 0;
    this.left = length;
    this.stage = Stage.Payload;
  }

  private endChunk(): void {
    const p = this.current!;
    const done = (this.chunkFlags & REPLY_FLAG_DONE) !== 0;
    this.reset();
    if (done) this.finish(p);
  }

  private finish(p: PendingRequest): void {
    this.reset();
    if (p.errno === 0 && p.type === CMD_READ && p.covered !== p.length) {
      this.break(`the reply to READ [${p.offset}, +${p.length}) covered ${p.covered} bytes`);
      return;
    }
    this.sink.done(p);
  }

  private reset(): void {
    this.stage = Stage.Magic;
    this.have = 0;
    this.need = 4;
    this.current = undefined;
    this.dest = undefined;
  }

  private break(message: string): void {
    this.stage = Stage.Broken;
    this.current = undefined;
    this.dest = undefined;
    this.sink.broken(message);
  }
}

function readU64(b: Buffer, at: number): number {
  return b.readUInt32BE(at) * 0x100000000 + b.readUInt32BE(at + 4);
}
