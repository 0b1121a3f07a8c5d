// The transmission-phase request parser: an explicit state machine over a BufferList.
//   HEADER ──(28 bytes)──► ADMIT ──(sink accepts its cost, not a WRITE)─────────────► HEADER
//                          ADMIT ──(WRITE with payload ≤ max)──► PAYLOAD ──(length)──► HEADER
//                          ADMIT ──(WRITE with payload > max)──► SKIP ─────(length)──► HEADER
// It checks only what framing needs (the magic, which command carries a payload); what a request
// means and whether it is valid is the connection's business. A parsed header waits in ADMIT
// until the sink has room for what the request will hold, so a WRITE's payload is not even
// buffered before the connection can take it.
//
// A WRITE's payload is collected in a buffer of its own, which the sink gives at ADMIT (from a
// pool): the bytes already received are copied into it, and a connection that reads its socket
// into buffers of its choosing (socket-receiver.ts) has the rest land there directly
// (payloadTarget/payloadLanded), so a large payload is never copied in user space.

import type { BufferList } from './buffer-list.js';
import { CMD_READ, CMD_WRITE, REQUEST_MAGIC, REQUEST_SIZE } from './protocol.js';

export interface NbdRequest {
  flags: number;
  type: number;
  /** The 64-bit cookie as two halves: echoed back verbatim, never interpreted. */
  cookieHi: number;
  cookieLo: number;
  /** Byte offset; values past 2^53 lose precision but stay larger than any export. */
  offset: number;
  length: number;
  /**
   * The WRITE payload, in the buffer the sink gave for it (RequestSink.payloadBuffer), `length`
   * bytes long. Undefined for other commands and for a payload too large to accept.
   */
  data: Buffer | undefined;
}

export interface RequestSink {
  /**
   * Whether a request that will hold `bytes` (RequestParser.heldBy: a READ's buffer, a WRITE's
   * data at its weight) may start now; false while the connection wants no more requests
   * (backpressure, or after DISC).
   */
  accepting(bytes: number): boolean;
  /** A buffer of exactly `length` bytes to collect an admitted WRITE's payload in. */
  payloadBuffer(length: number): Buffer;
  onRequest(request: NbdRequest): void;
  /** The stream cannot be framed any more; the connection must be dropped. */
  onFramingError(message: string): void;
}

const enum State {
  Header,
  Admit,
  Payload,
  Skip,
  Broken,
}

export class RequestParser {
  private state = State.Header;
  /**
   * The request waiting for admission (ADMIT), or the WRITE whose payload is being collected
   * (PAYLOAD) or dropped (SKIP); undefined in HEADER.
   */
  private current: NbdRequest | undefined;
  /** Payload bytes still to drop in SKIP. */
  private skipLeft = 0;
  /** In PAYLOAD: the buffer the payload is collected in, and how much of it has arrived. */
  private payload: Buffer | undefined;
  private got = 0;
  private readonly scratch = Buffer.allocUnsafe(REQUEST_SIZE);

  /** `writeWeight`: what a WRITE holds per byte of its payload (NbdExport.writeWeight). */
  constructor(
    private readonly maxPayload: number,
    private readonly sink: RequestSink,
    private readonly writeWeight = 1,
  ) {}

  parse(input: BufferList): void {
    for (;;) {
      switch (this.state) {
        case State.Header: {
          if (input.length < REQUEST_SIZE) return;
          const h = input.takeWindow(REQUEST_SIZE, this.scratch);
          const at = input.windowAt;
          const magic = h.readUInt32BE(at);
          if (magic !== REQUEST_MAGIC) {
            this.state = State.Broken;
            this.sink.onFramingError(`expected request magic 0x25609513, found 0x${magic.toString(16).padStart(8, '0')}`);
            return;
          }
          const request: NbdRequest = {
            flags: h.readUInt16BE(at + 4),
            type: h.readUInt16BE(at + 6),
            cookieHi: h.readUInt32BE(at + 8),
            cookieLo: h.readUInt32BE(at + 12),
            offset: h.readUInt32BE(at + 16) * 0x100000000 + h.readUInt32BE(at + 20),
            length: h.readUInt32BE(at + 24),
            data: undefined,
          };
          this.current = request;
          this.state = State.Admit;
          break;
        }
        case State.Admit: {
          const request = this.current!;
          if (!this.sink.accepting(this.pendingBytes)) return;
          if (request.type !== CMD_WRITE || request.length === 0) {
            if (request.type === CMD_WRITE) request.data = Buffer.alloc(0);
            this.current = undefined;
            this.state = State.Header;
            this.sink.onRequest(request);
          } else if (request.length > this.maxPayload) {
            this.skipLeft = request.length;
            this.state = State.Skip;
          } else {
            this.payload = this.sink.payloadBuffer(request.length);
            this.got = 0;
            this.state = State.Payload;
          }
          break;
        }
        case State.Payload: {
          const request = this.current!;
          const payload = this.payload!;
          if (input.length > 0 && this.got < request.length) this.got += input.takeInto(payload, this.got);
          if (this.got < request.length) return;
          request.data = payload;
          this.payload = undefined;
          this.current = undefined;
          this.state = State.Header;
          this.sink.onRequest(request);
          break;
        }
        case State.Skip: {
          this.skipLeft -= input.skip(this.skipLeft);
          if (this.skipLeft > 0) return;
          const request = this.current!;
          this.current = undefined;
          this.state = State.Header;
          this.sink.onRequest(request);
          break;
        }
        case State.Broken:
          return;
      }
    }
  }

  /**
   * Bytes the request waiting for admission will hold once started (a READ's buffer, a WRITE's
   * data at its weight: heldBy); 0 when no request waits.
   */
  get pendingBytes(): number {
    const r = this.current;
    return this.state !== State.Admit || r === undefined ? 0 : this.heldBy(r);
  }

  /**
   * What a request holds while in flight: a READ its buffer, a WRITE its data at the export's
   * write weight; one larger than the maximum payload is refused or skipped, so holds nothing.
   */
  heldBy(r: NbdRequest): number {
    if ((r.type !== CMD_READ && r.type !== CMD_WRITE) || r.length > this.maxPayload) return 0;
    return r.type === CMD_WRITE ? Math.ceil(r.length * this.writeWeight) : r.length;
  }

  /** True while a WRITE's payload has been announced but not fully received. */
  get midRequest(): boolean {
    return this.state === State.Payload || this.state === State.Skip;
  }

  /**
   * Where the next bytes of the stream may land directly: the rest of the payload being collected,
   * while nothing else is queued before it; otherwise undefined.
   */
  payloadTarget(input: BufferList): Buffer | undefined {
    if (this.state !== State.Payload || input.length > 0) return undefined;
    return this.payload!.subarray(this.got);
  }

  /** `n` bytes landed at the start of the last payloadTarget(); parses on. */
  payloadLanded(n: number, input: BufferList): void {
    this.got += n;
    this.parse(input);
  }

  /** The payload buffer of a WRITE abandoned mid-payload (the connection closed), for its pool. */
  abandon(): Buffer | undefined {
    const b = this.payload;
    this.payload = undefined;
    this.state = State.Broken;
    return b;
  }
}
