// An NBD export as a BlockDevice: what md opens for a member on another node. One connection,
// many requests in flight (matched by cookie), payloads never copied on the way out and READ data
// copied once, from the socket's chunks into the caller's buffer.
//
// Failure semantics (issue 13 plan, 6): a request not answered within timeoutMs (ETIMEDOUT), a
// connection that drops (EIO, with the socket's error as cause), or a server that breaks the
// protocol (EIO, cause NBD_PROTOCOL) fails the device: every outstanding and every later request
// rejects with that one error, and health() reports it. An error reply whose message starts
// `fenced:` fails it with a FencedError. A member service that fences a connection with no
// request outstanding just closes it, which looks like any lost connection; so when a connection
// attached with an epoch is lost, the client first attaches once more with that epoch (at most
// PROBE_MS) and fails the device with the FencedError it is refused with, if it is: an engine
// must never take a fence for a member that merely dropped out and go on degraded (that is how
// split brain starts). Requests wait for that answer. Any other error reply (ENOSPC, EINVAL, ...) rejects its
// request only. After close() everything rejects with ESHUTDOWN.

import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { checkRange, type BlockDevice, type DeviceCapabilities, type Extent, type WriteOptions, type ZeroOptions } from '../../block/block-device.js';
import {
  BlockError,
  FencedError,
  IoError,
  NotSupportedError,
  ReadOnlyError,
  ShutdownError,
  TimeoutError,
} from '../../block/errors.js';
import { describeError, trace } from '../../common/trace.js';
import { NbdError } from '../errors.js';
import {
  CMD_BLOCK_STATUS,
  CMD_DISC,
  CMD_FLAG_FAST_ZERO,
  CMD_FLAG_FUA,
  CMD_FLAG_NO_HOLE,
  CMD_FLUSH,
  CMD_READ,
  CMD_TRIM,
  CMD_WRITE,
  CMD_WRITE_ZEROES,
  DEFAULT_MAX_PAYLOAD,
  TFLAG_CAN_MULTI_CONN,
  TFLAG_READ_ONLY,
  TFLAG_SEND_FAST_ZERO,
  TFLAG_SEND_FLUSH,
  TFLAG_SEND_FUA,
  TFLAG_SEND_TRIM,
  TFLAG_SEND_WRITE_ZEROES,
  commandName,
} from '../protocol.js';
import { negotiate, type AttachedExport } from './handshake.js';
import { HandshakeStream } from './handshake-stream.js';
import { resolveOptions, type NbdClientOptions, type ResolvedOptions } from './options.js';
import { ReplyParser, type ReplySink } from './reply-parser.js';
import { replyError } from './reply-errors.js';
import { PendingRequest, RequestTable } from './request-table.js';
import { RequestWriter } from './request-writer.js';
import { isTlsFailure, openSocket, startTls, tlsError, type PlainReads } from './transport.js';

/** TRIM, WRITE_ZEROES and BLOCK_STATUS lengths are 32-bit; larger ranges go in pieces of this. */
const MAX_RANGE_COMMAND = 1024 * 1024 * 1024;
/** How long close() waits for the server to hang up after NBD_CMD_DISC. */
const CLOSE_WAIT_MS = 2_000;
/** How long a lost connection attached with an epoch is probed for a fence (lost()). */
const PROBE_MS = 5_000;

type State = 'open' | 'failed' | 'closing' | 'closed';

export class NbdClientDevice implements BlockDevice, ReplySink {
  readonly uri: string;
  readonly size: number;
  /** The server's minimum block size (NBD_INFO_BLOCK_SIZE), at least 512. */
  readonly blockSize: number;
  readonly readOnly: boolean;
  readonly capabilities: DeviceCapabilities;
  /** READ and WRITE requests larger than this are split: the server's maximum, at most 32 MiB. */
  readonly maxPayload: number;
  /**
   * Present when the server selected `base:allocation` (never with an epoch: see handshake.ts).
   * Declared, not defined, so that the device without it has no `extents` property at all.
   */
  declare readonly extents?: (offset: number, length: number) => Promise<Extent[]>;

  private state: State = 'open';
  /** Set by the first close(); later calls wait for the same. */
  private closing: Promise<void> | undefined;
  /** Why the device failed (state 'failed'), the same error for every request. */
  private failure: BlockError | undefined;
  /** True while a lost connection is probed for a fence (lost()); the device fails after. */
  private probing = false;
  private readonly flags: number;
  private readonly table = new RequestTable();
  private readonly writer: RequestWriter;
  private readonly parser: ReplyParser;
  private readonly timer: NodeJS.Timeout;
  /** Resolves when no request is in flight any more (close() waits on it). */
  private idle: (() => void) | undefined;

  /** Connects, negotiates and attaches the export; rejects with NbdError (or FencedError). */
  static async connect(options: NbdClientOptions): Promise<NbdClientDevice> {
    return NbdClientDevice.attach(resolveOptions(options));
  }

  private static async attach(o: ResolvedOptions): Promise<NbdClientDevice> {
    const target = o.target;
    const deadline = Date.now() + o.connectTimeoutMs;
    const { socket, reads } = await openSocket(target, o.connectTimeoutMs);
    let stream: Socket | TLSSocket = socket;
    let tlsStarted = false;
    const hs = new HandshakeStream(target.uri);
    hs.attach(socket);
    if (reads !== undefined) reads.sink = hs.onData;
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      stream.destroy();
    }, Math.max(1, deadline - Date.now()));
    try {
      const attached = await negotiate(
        {
          read: (n) => hs.read(n),
          write: (b) => hs.write(b),
          startTls: async () => {
            hs.detach();
            tlsStarted = true;
            stream = await startTls(socket, target, o.tls!);
            hs.attach(stream);
          },
        },
        target,
        o.epoch,
        target.tls,
      );
      const early = hs.detach();
      const device = new NbdClientDevice(stream, reads, attached, o);
      if (early.length > 0) device.parser.push(early);
      return device;
    } catch (err) {
      hs.detach();
      stream.destroy();
      socket.destroy();
      if (timedOut) throw new NbdError('NBD_CONNECT', `${target.uri}: the handshake did not finish within ${o.connectTimeoutMs} ms`, { cause: err });
      if (err instanceof NbdError && err.code !== 'NBD_CLOSED') throw err;
      if (err instanceof BlockError) throw err;
      if (tlsStarted) {
        // TLS 1.3 lets the client finish its handshake before the server checks the client's
        // certificate: a refusal arrives as an alert, or a hang-up, at the next read.
        if (isTlsFailure(err)) throw tlsError(target, err as Error);
        throw new NbdError('NBD_TLS', `${target.uri}: the server ended the TLS session during the handshake (does it trust this client's certificate?): ${describeError(err)}`, { cause: err });
      }
      if (err instanceof NbdError) throw err;
      throw new NbdError('NBD_CLOSED', `${target.uri}: the connection failed during the handshake: ${describeError(err)}`, { cause: err });
    } finally {
      clearTimeout(timer);
    }
  }

  private constructor(
    private readonly socket: Socket | TLSSocket,
    reads: PlainReads | undefined,
    attached: AttachedExport,
    private readonly options: ResolvedOptions,
  ) {
    this.uri = options.target.uri;
    this.size = attached.size;
    this.flags = attached.flags;
    const sizes = attached.blockSizes;
    this.blockSize = Math.max(512, sizes?.minimum ?? 512);
    const max = Math.min(sizes?.maximum ?? DEFAULT_MAX_PAYLOAD, DEFAULT_MAX_PAYLOAD);
    this.maxPayload = Math.max(this.blockSize, max - (max % this.blockSize));
    this.readOnly = this.offers(TFLAG_READ_ONLY);
    this.capabilities = Object.freeze({
      flush: this.offers(TFLAG_SEND_FLUSH),
      // Without FUA on the wire, a FUA write is a write then a flush.
      fua: this.offers(TFLAG_SEND_FUA) || this.offers(TFLAG_SEND_FLUSH),
      trim: this.offers(TFLAG_SEND_TRIM),
      writeZeroes: this.offers(TFLAG_SEND_WRITE_ZEROES),
      fastZero: this.offers(TFLAG_SEND_WRITE_ZEROES) && this.offers(TFLAG_SEND_FAST_ZERO),
      multiConn: this.offers(TFLAG_CAN_MULTI_CONN),
    });
    if (attached.allocationContext !== undefined) this.extents = (offset, length) => this.blockStatus(offset, length);
    this.writer = new RequestWriter(socket);
    this.parser = new ReplyParser(this, attached.structured, attached.allocationContext);
    if (reads !== undefined) reads.sink = (chunk) => this.parser.push(chunk);
    else socket.on('data', (chunk: Buffer) => this.parser.push(chunk));
    socket.on('error', (err) => this.lost(new IoError(`${this.uri}: the connection was lost: ${err.message}`, { cause: err })));
    socket.on('close', () => this.onClose());
    const tick = Math.min(1000, Math.max(10, Math.floor(options.timeoutMs / 8)));
    this.timer = setInterval(() => this.checkDeadline(), tick);
    this.timer.unref();
    trace('nbd', 'info', () => `client ${this.uri}: attached, ${this.size} bytes, flags 0x${this.flags.toString(16)}, block ${this.blockSize}, max payload ${this.maxPayload}, structured replies ${attached.structured ? 'on' : 'off'}`);
  }

  // --- BlockDevice -------------------------------------------------------------------------

  async read(offset: number, length: number): Promise<Buffer> {
    const out = Buffer.allocUnsafe(length);
    await this.readInto(offset, out);
    return out;
  }

  readInto(offset: number, out: Buffer): Promise<void> {
    const refused = this.refuse('read', offset, out.length, false);
    if (refused !== undefined) return refused;
    if (out.length <= this.maxPayload) return this.submit(CMD_READ, 0, offset, out.length, out);
    const parts: Array<Promise<void>> = [];
    for (let at = 0; at < out.length; at += this.maxPayload) {
      const n = Math.min(this.maxPayload, out.length - at);
      parts.push(this.submit(CMD_READ, 0, offset + at, n, out.subarray(at, at + n)));
    }
    return all(parts);
  }

  write(offset: number, data: Uint8Array, options?: WriteOptions): Promise<void> {
    return this.writev(offset, [data], options);
  }

  writev(offset: number, parts: readonly Uint8Array[], options?: WriteOptions): Promise<void> {
    let length = 0;
    for (const p of parts) length += p.length;
    const refused = this.refuse('write', offset, length, true);
    if (refused !== undefined) return refused;
    const fua = options?.fua === true;
    const nativeFua = fua && this.offers(TFLAG_SEND_FUA);
    const flags = nativeFua ? CMD_FLAG_FUA : 0;
    let done: Promise<void>;
    if (length <= this.maxPayload) {
      done = this.submit(CMD_WRITE, flags, offset, length, undefined, parts);
    } else {
      const pieces: Array<Promise<void>> = [];
      for (let at = 0; at < length; at += this.maxPayload) {
        const n = Math.min(this.maxPayload, length - at);
        pieces.push(this.submit(CMD_WRITE, flags, offset + at, n, undefined, sliceParts(parts, at, n)));
      }
      done = all(pieces);
    }
    return fua && !nativeFua ? done.then(() => this.flush()) : done;
  }

  flush(): Promise<void> {
    const refused = this.refuse('flush', 0, 0, false);
    if (refused !== undefined) return refused;
    // A server without NBD_FLAG_SEND_FLUSH has no cache to flush (and must not be sent one).
    if (!this.offers(TFLAG_SEND_FLUSH)) return Promise.resolve();
    return this.submit(CMD_FLUSH, 0, 0, 0);
  }

  discard(offset: number, length: number): Promise<void> {
    const refused = this.refuse('discard', offset, length, true);
    if (refused !== undefined) return refused;
    // A discard is advice: a server that takes none loses nothing by not being sent one.
    if (!this.offers(TFLAG_SEND_TRIM)) return Promise.resolve();
    return this.ranged(CMD_TRIM, 0, offset, length);
  }

  writeZeroes(offset: number, length: number, options?: ZeroOptions): Promise<void> {
    const refused = this.refuse('writeZeroes', offset, length, true);
    if (refused !== undefined) return refused;
    if (options?.fast === true && !this.capabilities.fastZero) {
      return Promise.reject(new NotSupportedError(`${this.uri}: the server does not zero fast (no NBD_FLAG_SEND_FAST_ZERO)`));
    }
    const fua = options?.fua === true;
    if (!this.offers(TFLAG_SEND_WRITE_ZEROES)) return this.writeZeroBuffers(offset, length, fua);
    const nativeFua = fua && this.offers(TFLAG_SEND_FUA);
    const flags = (nativeFua ? CMD_FLAG_FUA : 0) | (options?.noHole === true ? CMD_FLAG_NO_HOLE : 0) | (options?.fast === true ? CMD_FLAG_FAST_ZERO : 0);
    const done = this.ranged(CMD_WRITE_ZEROES, flags, offset, length);
    return fua && !nativeFua ? done.then(() => this.flush()) : done;
  }

  async health(): Promise<string | undefined> {
    // Fenced: a rejection, as the requests', so md fences the array even when it was idle.
    if (this.state === 'failed' && this.failure instanceof FencedError) throw this.failure;
    if (this.state === 'failed') return this.failure!.message;
    if (this.state === 'closed') return `${this.uri}: closed`;
    return undefined;
  }

  /** Waits for the requests in flight, sends NBD_CMD_DISC and closes the connection. */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    const failed = this.state === 'failed';
    this.state = 'closing';
    if (!failed) {
      if (this.table.size > 0) await new Promise<void>((resolve) => (this.idle = resolve));
    }
    if (!this.socket.destroyed) {
      this.writer.send(CMD_DISC, 0, 0, 0, 0);
      const closed = new Promise<void>((resolve) => {
        this.socket.once('close', () => resolve());
        setTimeout(resolve, CLOSE_WAIT_MS).unref();
      });
      this.socket.end();
      await closed;
      this.socket.destroy();
    }
    this.state = 'closed';
    clearInterval(this.timer);
  }

  // --- ReplySink -----------------------------------------------------------------------------

  request(cookieHi: number, cookieLo: number): PendingRequest | undefined {
    return this.table.get(cookieHi, cookieLo);
  }

  done(p: PendingRequest): void {
    this.table.remove(p);
    if (p.errno === 0) p.resolve();
    else {
      const err = replyError(`${this.uri}: ${describe(p)}`, p.errno, p.message);
      p.reject(err);
      if (err instanceof FencedError) this.fail(err);
    }
    if (this.table.size === 0) this.settled();
  }

  broken(message: string): void {
    const cause = new NbdError('NBD_PROTOCOL', `${this.uri}: ${message}`);
    this.fail(new IoError(`${this.uri}: the server broke the NBD protocol: ${message}`, { cause }));
  }

  // --- internals -----------------------------------------------------------------------------

  private offers(flag: number): boolean {
    return (this.flags & flag) !== 0;
  }

  /** A rejected promise when the device cannot take the request, else undefined. */
  private refuse(what: string, offset: number, length: number, writes: boolean): Promise<never> | undefined {
    if (this.state !== 'open') return Promise.reject(this.unusable());
    try {
      checkRange(`${this.uri}: ${what}`, this.size, offset, length);
    } catch (err) {
      return Promise.reject(err as Error);
    }
    if (writes && this.readOnly) return Promise.reject(new ReadOnlyError(`${this.uri}: ${what} on a read-only export`));
    return undefined;
  }

  private unusable(): BlockError {
    if (this.state === 'failed') return this.failure!;
    return new ShutdownError(`${this.uri}: the device is closed`);
  }

  private submit(type: number, flags: number, offset: number, length: number, dest?: Buffer, payload?: readonly Uint8Array[], extents?: Extent[]): Promise<void> {
    if (this.state === 'failed') return Promise.reject(this.failure!);
    if (length === 0 && (type === CMD_READ || type === CMD_WRITE)) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const p = this.table.add(type, offset, length, dest, extents, resolve, reject);
      // While the lost connection is probed, a request waits (unsent) for the device's failure.
      if (!this.probing) this.writer.send(type, flags, p.cookie, offset, length, payload);
    });
  }

  /** A TRIM or WRITE_ZEROES over any range: 32-bit lengths, so pieces of MAX_RANGE_COMMAND. */
  private ranged(type: number, flags: number, offset: number, length: number): Promise<void> {
    if (length === 0) return Promise.resolve();
    if (length <= MAX_RANGE_COMMAND) return this.submit(type, flags, offset, length);
    const pieces: Array<Promise<void>> = [];
    for (let at = 0; at < length; at += MAX_RANGE_COMMAND) {
      pieces.push(this.submit(type, flags, offset + at, Math.min(MAX_RANGE_COMMAND, length - at)));
    }
    return all(pieces);
  }

  /** WRITE_ZEROES for a server that does not take it: zeroes written, one shared buffer. */
  private async writeZeroBuffers(offset: number, length: number, fua: boolean): Promise<void> {
    const zeroes = Buffer.alloc(Math.min(length, this.maxPayload, 1024 * 1024));
    const pieces: Array<Promise<void>> = [];
    for (let at = 0; at < length; at += zeroes.length) {
      const n = Math.min(zeroes.length, length - at);
      pieces.push(this.submit(CMD_WRITE, 0, offset + at, n, undefined, [zeroes.subarray(0, n)]));
    }
    await all(pieces);
    if (fua) await this.flush();
  }

  private async blockStatus(offset: number, length: number): Promise<Extent[]> {
    const refused = this.refuse('extents', offset, length, false);
    if (refused !== undefined) return refused;
    const out: Extent[] = [];
    let at = offset;
    const end = offset + length;
    while (at < end) {
      const got: Extent[] = [];
      await this.submit(CMD_BLOCK_STATUS, 0, at, Math.min(MAX_RANGE_COMMAND, end - at), undefined, undefined, got);
      if (got.length === 0) throw new IoError(`${this.uri}: BLOCK_STATUS [${at}, +${end - at}) answered no base:allocation extent`);
      for (const e of got) {
        const n = Math.min(e.length, end - at);
        out.push({ ...e, length: n });
        at += n;
        if (at === end) break;
      }
    }
    return out;
  }

  private onClose(): void {
    if (this.state === 'open' || (this.state === 'closing' && this.table.size > 0)) {
      this.lost(new IoError(`${this.uri}: the connection was lost: the server closed it${this.table.size > 0 ? ` with ${this.table.size} requests in flight` : ''}`));
    }
  }

  /**
   * The connection is gone: without an epoch the device fails with `err`; with one, it fails with
   * what a new attach with the same epoch says: FencedError when the member was taken by a
   * higher epoch, else `err` (the probe's own connection, if it attached, is closed at once).
   */
  private lost(err: IoError): void {
    if (this.state !== 'open' || this.options.epoch === undefined) return this.fail(err);
    if (this.probing) return;
    this.probing = true;
    clearInterval(this.timer);
    this.socket.destroy();
    const probe = { ...this.options, connectTimeoutMs: Math.min(this.options.connectTimeoutMs, PROBE_MS) };
    void NbdClientDevice.attach(probe).then(
      async (again) => {
        await again.close().catch(() => undefined);
        return err;
      },
      (why: unknown) => (why instanceof FencedError ? why : err),
    ).then((e) => {
      this.probing = false;
      this.fail(e);
    });
  }

  private checkDeadline(): void {
    const oldest = this.table.oldest();
    if (oldest === undefined) return;
    const waited = performance.now() - oldest.started;
    if (waited > this.options.timeoutMs) {
      this.fail(new TimeoutError(`${this.uri}: ${describe(oldest)} was not answered within ${this.options.timeoutMs} ms`));
    }
  }

  /** Fails the device for good: the connection is dropped, every request rejects with `err`. */
  private fail(err: BlockError): void {
    if (this.state === 'failed' || this.state === 'closed') return;
    // While closing, later calls keep getting ESHUTDOWN; the requests close() waits for get `err`.
    if (this.state === 'open') this.state = 'failed';
    this.failure = err;
    trace('nbd', 'error', () => `client ${this.uri}: failed: ${err.message}`);
    clearInterval(this.timer);
    this.socket.destroy();
    for (const p of this.table.takeAll()) p.reject(err);
    this.settled();
  }

  private settled(): void {
    const idle = this.idle;
    this.idle = undefined;
    idle?.();
  }
}

function describe(p: PendingRequest): string {
  return p.type === CMD_FLUSH ? 'FLUSH' : `${commandName(p.type)} [${p.offset}, +${p.length})`;
}

/** Resolves when every promise resolved; rejects with the first failure (the rest are handled). */
function all(parts: Array<Promise<void>>): Promise<void> {
  return Promise.all(parts).then(() => undefined);
}

/** The views of `parts` covering [from, from+length) of their concatenation. */
function sliceParts(parts: readonly Uint8Array[], from: number, length: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  let at = 0;
  for (const p of parts) {
    const end = at + p.length;
    if (end > from && at < from + length) {
      out.push(p.subarray(Math.max(0, from - at), Math.min(p.length, from + length - at)));
    }
    at = end;
    if (at >= from + length) break;
  }
  return out;
}
