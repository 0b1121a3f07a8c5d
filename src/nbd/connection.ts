// One client connection of the NBD server: the handshake, then the transmission phase. Requests
// are validated here, started on the export's BlockDevice at once (many in flight), and answered
// in completion order. Reading from the socket pauses while too much is in flight or replies are
// waiting for the client to read them (in both phases), so a client that sends and never reads
// cannot grow the server: one connection holds at most about maxInFlightBytes, and one that
// holds more than its caps anyway is dropped.
//
// A connection that requires TLS upgrades its socket at NBD_OPT_STARTTLS (handshake.ts) and
// serves the rest over the TLS socket. A connection may be fenced by its export's owner (the
// member service, when an engine with a higher epoch takes the member): see fence().

import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { BufferList } from './buffer-list.js';
import { receiveInto } from './socket-receiver.js';
import { nbdErrorNumber } from './error-numbers.js';
import { NbdError } from './errors.js';
import type { Attachment, ExportSource, NbdExport, ServedConnection } from './export.js';
import { BASE_ALLOCATION_ID, MAX_OPTION_LENGTH, negotiate, type HandshakeIo, type MetaContext } from './handshake.js';
import {
  CMD_BLOCK_STATUS,
  CMD_CACHE,
  CMD_DISC,
  CMD_FLAG_DF,
  CMD_FLAG_FAST_ZERO,
  CMD_FLAG_FUA,
  CMD_FLAG_NO_HOLE,
  CMD_FLAG_REQ_ONE,
  CMD_FLUSH,
  CMD_READ,
  CMD_TRIM,
  CMD_WRITE,
  CMD_WRITE_ZEROES,
  MAX_STATUS_DESCRIPTORS,
  NBD_EINVAL,
  NBD_ENOSPC,
  NBD_EPERM,
  NBD_ESHUTDOWN,
  OPTION_HEADER_SIZE,
  REQUEST_SIZE,
  STATE_HOLE,
  STATE_ZERO,
  TFLAG_SEND_FAST_ZERO,
  TFLAG_SEND_FLUSH,
  TFLAG_SEND_FUA,
  TFLAG_SEND_TRIM,
  TFLAG_SEND_WRITE_ZEROES,
  commandName,
} from './protocol.js';
import { ReplyWriter } from './reply-writer.js';
import { RequestParser, type NbdRequest, type RequestSink } from './request-parser.js';
import type { BlockDevice, Extent } from '../block/block-device.js';
import { SizeClassPool } from '../block/size-class-pool.js';
import { tlsModule } from '../common/lazy-builtins.js';
import { describeError, trace } from '../common/trace.js';

export interface ConnectionLimits {
  /** Requests started and not yet answered before reading pauses. */
  maxInFlight: number;
  /**
   * Payload bytes the connection may hold: WRITE data (at the export's write weight: what the
   * device holds for it too) and READ buffers of the requests in flight, and READ replies from
   * the payload pool until the kernel has taken them. A request that would
   * pass it waits, with reading paused, unless the connection holds nothing (so one request of the
   * export's maximum payload always runs, alone).
   */
  maxInFlightBytes: number;
  /**
   * Reply bytes queued for the client and not yet taken by the kernel. Backpressure keeps them
   * near maxInFlightBytes; a connection past this cap is dropped.
   */
  maxUnsentBytes: number;
  /**
   * Received bytes not yet parsed (an option or a WRITE payload being collected, plus one socket
   * read). Backpressure keeps them near one message; a connection past this cap is dropped.
   */
  maxInputBytes: number;
  /** A client that has not finished the handshake after this long is dropped. */
  handshakeTimeoutMs: number;
  /**
   * After the server hangs up (DISC, shutdown), how long a client may go without reading any of
   * its last replies (or, having read them all, without closing) before it is cut off.
   */
  closeTimeoutMs: number;
}

/** What the reused parts array holds between WRITEs: no reference to a pooled payload. */
const NO_BYTES = Buffer.alloc(0);

export const DEFAULT_LIMITS: ConnectionLimits = {
  maxInFlight: 256,
  // Six of fio's 1M QD8 requests; nbdcopy's 64 x 256 KiB get 24 of theirs, the kernel client's
  // 128 KiB requests 48. The engine is one thread with a few I/O threads, which this keeps busy:
  // with 1 MiB requests at 2 GB/s it is 3 ms of work. Every byte of it is an engine's memory
  // under load (the payload pool keeps this much): at 32 MiB, counting READs only until they
  // completed, fio's 1M reads at QD8 held 15 MiB of buffers (8 in flight and up to 8 replies in
  // the socket). At 8 MiB (all eight in flight) a raid1 engine's 1M reads peaked 1.5 MiB higher
  // than at 6, its 1M writes 0.5, for the same requests per second within the noise; 1M writes
  // cost `serve --file` 5-8% more CPU at 6 (413-456 µs each at 8, 450-466 at 6: reading now
  // pauses and resumes once per request), the price of a smaller engine under large requests.
  maxInFlightBytes: 6 * 1024 * 1024,
  maxUnsentBytes: 64 * 1024 * 1024,
  maxInputBytes: 64 * 1024 * 1024,
  handshakeTimeoutMs: 30_000,
  closeTimeoutMs: 5_000,
};

/**
 * What a connection may hold beyond one message before a cap is reached: received bytes not yet
 * parsed fill at most two 256 KiB rings (one full of requests waiting for the in-flight budget, the
 * read that came before reading paused; a socket without the ring reads 64 KiB at a time), the
 * stream buffers' high-water marks are 16-64 KiB, and reply headers wait in a 64 KiB slab until the
 * turn ends. Caps below one maximum message plus this could drop honest clients.
 */
export const CAP_SLACK = 2 * 256 * 1024 + 64 * 1024;

/**
 * Throws NBD_LIMITS unless every limit is a positive whole number and the caps leave room for the
 * largest message an honest client can cause: a READ reply or WRITE of `maxPayload`, or an option.
 */
export function checkLimits(limits: ConnectionLimits, maxPayload: number): void {
  for (const [name, value] of Object.entries(limits)) {
    if (!Number.isSafeInteger(value) || value <= 0) {
      throw new NbdError('NBD_LIMITS', `limit ${name}: expected a positive whole number, found ${String(value)}`);
    }
  }
  const message = Math.max(maxPayload + REQUEST_SIZE, MAX_OPTION_LENGTH + OPTION_HEADER_SIZE);
  for (const name of ['maxUnsentBytes', 'maxInputBytes'] as const) {
    if (limits[name] < message + CAP_SLACK) {
      throw new NbdError('NBD_LIMITS', `limit ${name}: expected at least ${message + CAP_SLACK} (one ${message}-byte message and ${CAP_SLACK} of slack), found ${limits[name]}`);
    }
  }
}

/**
 * What a server that requires TLS on a connection holds: PEM text of its certificate, its key,
 * and the CA that signed the clients it accepts.
 */
export interface TlsCredentials {
  cert: string | Buffer;
  key: string | Buffer;
  ca: string | Buffer;
}

type Phase = 'handshake' | 'transmission' | 'draining' | 'closed';

/** Numbers connections in trace lines, per process. */
let connectionCount = 0;

/** A handshake read(n) or skip(n) waiting for bytes, or (read only) for queued replies to drain. */
type Waiter =
  | { skip: false; n: number; resolve: (b: Buffer) => void; reject: (e: Error) => void }
  | { skip: true; n: number; left: number; resolve: () => void; reject: (e: Error) => void };

/** READs at least this large go through readInto and the payload pool, where the device has readInto. */
const POOLED_READ = 64 * 1024;

/**
 * The payload buffers of one server's connections (WRITE payloads, READ replies): one pool for
 * all of them, so the buffers of a connection that ended are what the next one reuses (a pool per
 * connection left each one's buffers to V8's next full collection: fio's 1 MiB reads and then its
 * 1 MiB writes, each on a connection of its own, held both sets, +12 MiB). Busy, it keeps up to
 * maxInFlightBytes free (the most one connection holds at once, its requests and its replies in
 * the socket, so a client that keeps its budget full allocates nothing more); a quarter of a
 * second after the last buffer of a size was taken, it keeps 1 MiB, what the kernel client's
 * 128 KiB requests use at depth 8: an engine at rest is what a volume costs most of its life, and
 * the next burst pays its page faults once. What it lets go of is given back to the kernel then
 * (block/give-back.ts). The quarter second is for a client that moves from large requests to
 * small ones: for as long as the pool still holds the large ones, the small ones' memory comes on
 * top (a raid1 engine from fio's 1M writes to its 4K reads peaked at 66.5-67.1 MiB with a second,
 * 63.2-63.7 with a quarter, its 1M reads' own peak being 65); a client whose bursts of large
 * requests come further apart pays their page faults and a collection per burst.
 */
export function payloadPool(limits: ConnectionLimits): SizeClassPool {
  return new SizeClassPool(limits.maxInFlightBytes, { keepBytes: 1024 * 1024, afterMs: 250 });
}
/**
 * The buffer a connection reads its socket into when it may choose (socket-receiver.ts): headers,
 * small payloads and options land here, and are parsed before the next read.
 */
const RING_BYTES = 256 * 1024; // CAP_SLACK allows for two
/** A read gets at least this much room in the ring; less left at its end, and the ring is compacted. */
const MIN_RING_READ = 64 * 1024;
/** The rest of a WRITE payload is read straight into its buffer when at least this much is missing. */
const DIRECT_PAYLOAD = 32 * 1024;
/**
 * After a WRITE of at least LARGE_WRITE, the next read into the ring takes at most AFTER_LARGE_WRITE
 * bytes: a client writing large pieces has the next one queued behind, and a whole ring read would
 * bring up to 256 KiB of its payload into the ring, to be copied into the payload's buffer (7.4% of
 * the engine's thread under 1 MiB writes at QD8, in memmove). Capped, the next header and a few KiB
 * land in the ring and the rest of that payload lands in its buffer. Smaller writes keep whole ring
 * reads: at 4-64 KiB, one read takes many requests, and a syscall per request would cost more.
 */
const LARGE_WRITE = 256 * 1024;
const AFTER_LARGE_WRITE = 4096;

export class NbdConnection implements RequestSink, HandshakeIo, ServedConnection {
  private readonly input = new BufferList();
  /**
   * Set when the socket reads into buffers this connection chooses (socket-receiver.ts): `ring`,
   * filled up to `fill`, or a WRITE payload's own buffer when `intoPayload`. Invariant in that
   * mode: the queued input is views of rings, and no byte of the ring before `fill` is still
   * referenced once it has been parsed (the handshake copies what it takes).
   */
  private direct = false;
  private ring: Buffer | undefined;
  /** The ring reading left for `ring` (nextTarget), used again once nothing queued lies in it. */
  private spareRing: Buffer | undefined;
  private fill = 0;
  private intoPayload = false;
  /** The last request parsed was a WRITE of at least LARGE_WRITE: the next ring read is short. */
  private afterLargeWrite = false;
  /** The plain socket, replaced by its TLS socket once STARTTLS succeeded. */
  private socket: Socket;
  private writer: ReplyWriter;
  private phase: Phase = 'handshake';
  /** Set in the handshake phase while a read(n) or skip(n) waits. */
  private waiter: Waiter | undefined;
  /** Defined from the end of the handshake on. */
  private parser: RequestParser | undefined;
  private export: NbdExport | undefined;
  /** What the export's source gave, released (once) when the connection has settled. */
  private attachment: Attachment | undefined;
  /** The meta contexts selected at GO; BLOCK_STATUS answers one chunk per context. */
  private contexts: MetaContext[] = [];
  /** Set by fence(): the message every request still unanswered gets, with ESHUTDOWN. */
  private fencedMessage: string | undefined;
  /** Resolves once the connection is fenced and no device call of it runs. */
  private fenced: Promise<void> | undefined;
  private fenceDone: (() => void) | undefined;
  /** The socket (plain or TLS) has closed; closed() ran. */
  private sawClose = false;
  private inFlight = 0;
  private inFlightBytes = 0;
  /** The parts array every WRITE's writeNow gets, its one element set for the call. */
  private readonly onePart: Buffer[] = [NO_BYTES];
  /**
   * Bytes of READ replies from the payload pool the socket has not handed to the kernel yet. They
   * count against maxInFlightBytes with the requests in flight, so that what a connection holds of
   * the pool stays within it: a reply waiting for the client is memory as much as a request.
   */
  private replyBytes = 0;
  /** True while this connection has paused the socket (either phase); reading resumes on 'drain' or a reply. */
  private readingPaused = false;
  /** Set once our side of the socket has been ended. */
  private hungUp = false;
  private settle!: () => void;
  /** Resolves once the socket is closed and no request of this connection is still running. */
  readonly settled: Promise<void>;
  /** This connection in trace lines. */
  readonly id = ++connectionCount;
  /** `HOST:PORT` (plus the client certificate's CN once TLS is on), or `unix`. */
  peer: string;
  private readonly log: (message: string) => void;
  private readonly onData = (chunk: Buffer): void => this.received(chunk);
  private readonly onDrain = (): void => this.drained();
  private readonly onError = (err: Error): void => this.log(`connection error: ${err.message}`);
  private readonly onClose = (): void => this.closed();
  /** HandshakeIo.startTls: present only on a connection that requires TLS. */
  readonly startTls?: (ack: Buffer) => Promise<void>;

  /**
   * `log` takes the diagnostics about a misbehaving client (a dropped connection, a failed
   * handshake); without one they go to the nbd trace, at error severity.
   */
  /**
   * `log` takes the diagnostics about a misbehaving client (a dropped connection, a failed
   * handshake); without one they go to the nbd trace, at error severity. With `tls` the client
   * must negotiate TLS (NBD_OPT_STARTTLS) before anything else.
   */
  constructor(
    socket: Socket,
    private readonly exports: ExportSource,
    private readonly limits: ConnectionLimits,
    log?: (message: string) => void,
    tls?: TlsCredentials,
    /** Shared with the server's other connections (payloadPool). */
    private readonly payloads: SizeClassPool = payloadPool(limits),
  ) {
    this.socket = socket;
    this.peer = socket.remoteAddress ? `${socket.remoteAddress}:${socket.remotePort}` : 'unix';
    this.log = log ?? ((m) => trace('nbd', 'error', () => `connection ${this.id}: ${m}`));
    trace('nbd', 'info', () => `connection ${this.id}: opened${socket.remoteAddress ? ` from ${this.peer}` : ''}`);
    this.writer = new ReplyWriter(socket);
    this.settled = new Promise((resolve) => (this.settle = resolve));
    socket.setNoDelay?.(true);
    // A TLS connection's bytes come decrypted from its TLS socket, as 'data' events.
    if (tls === undefined) {
      this.ring = Buffer.allocUnsafeSlow(RING_BYTES);
      this.direct = receiveInto(socket, { target: () => this.nextTarget(), landed: (n) => this.landed(n) });
      if (!this.direct) this.ring = undefined;
    }
    this.listenTo(socket);
    // The server accepts sockets paused (so that none is read before the mode above is chosen).
    socket.resume();
    if (tls !== undefined) this.startTls = (ack) => this.upgrade(ack, tls);
  }

  private listenTo(socket: Socket): void {
    if (!this.direct) socket.on('data', this.onData);
    socket.on('drain', this.onDrain);
    socket.on('error', this.onError);
    socket.on('close', this.onClose);
  }

  private stopListening(socket: Socket): void {
    if (!this.direct) socket.off('data', this.onData);
    socket.off('drain', this.onDrain);
    socket.off('error', this.onError);
    socket.off('close', this.onClose);
  }

  async run(): Promise<void> {
    const timer = setTimeout(() => {
      this.log(`client did not finish the handshake within ${this.limits.handshakeTimeoutMs} ms`);
      this.socket.destroy();
    }, this.limits.handshakeTimeoutMs);
    try {
      const chosen = await negotiate(this, this.exports, this);
      if (!chosen) {
        trace('nbd', 'info', () => `connection ${this.id}: handshake ended without an export (the client aborted or only listed)`);
        this.socket.end();
        return;
      }
      const e = chosen.attachment.export;
      this.attachment = chosen.attachment;
      trace('nbd', 'info', () => `connection ${this.id}: export ${JSON.stringify(e.name)} (${e.size} bytes` +
        `${e.readOnly ? ', read-only' : ''}), structured replies ${chosen.structured ? 'on' : 'off'}, ` +
        `meta contexts ${chosen.contexts.map((c) => c.name).join(', ') || 'none'}`);
      if (this.phase === 'closed' || this.fencedMessage !== undefined) {
        // Gone, or fenced, while its source was still attaching it: nothing was read, nothing runs.
        this.socket.destroy();
        this.releaseIfSettled();
        this.fenceDone?.();
        return;
      }
      this.export = e;
      this.contexts = chosen.contexts;
      this.writer.structured = chosen.structured;
      this.parser = new RequestParser(e.maxPayload, this, e.writeWeight);
      this.phase = 'transmission';
      this.parser.parse(this.input);
      this.maybePause();
      // The handshake may have left reading paused on replies that have drained since.
      this.maybeResume();
    } catch (err) {
      if (!(err instanceof NbdError && err.code === 'NBD_CLOSED')) this.log(`handshake failed: ${(err as Error).message}`);
      this.socket.destroy();
    } finally {
      clearTimeout(timer);
    }
  }

  /** Stops taking requests, lets those in flight finish and answer, then closes the socket. */
  shutdown(): Promise<void> {
    if (this.phase === 'handshake') this.socket.destroy();
    else if (this.phase === 'transmission') this.drain();
    return this.settled;
  }

  /**
   * Fences this connection (ServedConnection.fence): from this call on no device call of it
   * starts; requests already parsed from its input are answered at once, the started ones once
   * they settle (whatever their outcome), each with ESHUTDOWN and `fenced: ...` (a structured
   * error, or a simple ESHUTDOWN reply without structured replies); then the socket is closed.
   * Resolves once no device call of this connection runs.
   */
  fence(message: string): Promise<void> {
    if (this.fenced) return this.fenced;
    this.fencedMessage = message.startsWith('fenced:') ? message : `fenced: ${message}`;
    this.log(`${this.fencedMessage}; closing the connection`);
    this.fenced = new Promise((resolve) => (this.fenceDone = resolve));
    if (this.phase === 'handshake') {
      // Nothing was started yet. If its source is attaching it right now, run() sees the fence
      // when the handshake returns and serves nothing.
      this.socket.destroy();
    } else if (this.phase === 'transmission') {
      // Answer what has arrived whole: accepting() lets it all through, onRequest starts none.
      this.parser!.parse(this.input);
      this.drain();
    }
    if (this.inFlight === 0) this.fenceDone!();
    return this.fenced;
  }

  /**
   * STARTTLS (HandshakeIo.startTls): the ack goes out in clear text, then TLS 1.3 runs on the
   * same socket with a client certificate required. Node's TLS layer takes over the socket's
   * handle, so the ack must have left whole and nothing may have been read after it (a client
   * waits for the ack before its ClientHello; one that does not is dropped).
   *
   * The TLS server is Node's own (tls.Server, handed this one socket): it checks the client's
   * certificate against the CA after the handshake and says why it failed, which a bare
   * TLSSocket does not. It runs with rejectUnauthorized off so that this check, and its log
   * line, happen here; a client without a valid certificate never gets past it.
   */
  private async upgrade(ack: Buffer, tls: TlsCredentials): Promise<void> {
    const raw = this.socket;
    if (raw.writableLength > 0) throw new NbdError('NBD_PROTOCOL', 'client sent NBD_OPT_STARTTLS without reading the replies before it');
    raw.write(ack);
    if (raw.writableLength > 0 || this.input.length > 0) {
      throw new NbdError('NBD_PROTOCOL', 'client sent data after NBD_OPT_STARTTLS before reading its reply');
    }
    // The plain socket's 'close' stays heard: a handshake that fails may close either socket.
    this.stopListening(raw);
    raw.on('close', this.onClose);
    raw.on('error', () => undefined);
    if (this.readingPaused) {
      this.readingPaused = false;
      raw.resume();
    }
    const server = tlsModule().createServer({ ...tls, minVersion: 'TLSv1.3', requestCert: true, rejectUnauthorized: false });
    const secure = await new Promise<TLSSocket>((resolve, reject) => {
      let done = false;
      const fail = (why: string): void => {
        if (done) return;
        done = true;
        this.log(`TLS handshake with ${this.peer} failed: ${why}`);
        reject(new NbdError('NBD_CLOSED', `TLS handshake failed: ${why}`));
      };
      const gone = (): void => fail('the connection closed during the TLS handshake');
      raw.once('close', gone);
      server.once('secureConnection', (s: TLSSocket) => {
        raw.off('close', gone);
        s.once('close', this.onClose);
        if (s.authorized) {
          done = true;
          return resolve(s);
        }
        const cert = s.getPeerCertificate();
        s.destroy();
        fail(cert.subject === undefined ? 'the client presented no certificate' : `client certificate ${describeSubject(cert.subject)} refused: ${String(s.authorizationError)}`);
      });
      server.once('tlsClientError', (err, s) => {
        s.once('close', this.onClose);
        if (s.destroyed) this.closed();
        fail(err.message);
      });
      server.emit('connection', raw);
    });
    const cn = describeSubject(secure.getPeerCertificate().subject);
    this.peer = `${this.peer} (${cn})`;
    trace('nbd', 'info', () => `connection ${this.id}: TLS ${secure.getProtocol() ?? ''} with ${cn}`);
    this.socket = secure;
    this.writer = new ReplyWriter(secure);
    secure.setNoDelay?.(true);
    secure.off('close', this.onClose);
    this.listenTo(secure);
  }

  // --- HandshakeIo -------------------------------------------------------------------------

  /**
   * Resolves with the next `n` bytes, but not while replies already written wait for the client
   * to read them: proto.md has the client wait for the final reply to an option before sending
   * the next, so one that does not is not answered faster than it reads.
   */
  read(n: number): Promise<Buffer> {
    if (this.input.length >= n && !this.socket.writableNeedDrain) return Promise.resolve(this.takeCopy(n));
    if (this.phase === 'closed') return Promise.reject(closedError(n));
    return new Promise((resolve, reject) => (this.waiter = { skip: false, n, resolve, reject }));
  }

  /** Drops the next `n` bytes as they arrive, holding none of them. */
  skip(n: number): Promise<void> {
    if (this.phase === 'closed') return Promise.reject(closedError(n));
    return new Promise((resolve, reject) => {
      this.waiter = { skip: true, n, left: n, resolve, reject };
      this.serveWaiter();
    });
  }

  write(data: Buffer): void {
    if (!this.socket.writable) return;
    if (!this.socket.write(data) && !this.readingPaused) {
      // Stop reading options until the client has read these replies (see read()).
      this.readingPaused = true;
      this.socket.pause();
    }
    this.checkCaps();
  }

  // --- RequestSink -------------------------------------------------------------------------

  accepting(bytes: number): boolean {
    // Fenced: every request parsed is answered at once, none started.
    if (this.fencedMessage !== undefined) return this.phase === 'transmission';
    return (
      this.phase === 'transmission' &&
      this.inFlight < this.limits.maxInFlight &&
      (this.inFlightBytes + this.replyBytes === 0 || this.inFlightBytes + this.replyBytes + bytes <= this.limits.maxInFlightBytes) &&
      !this.socket.writableNeedDrain
    );
  }

  onFramingError(message: string): void {
    this.drop(message);
  }

  payloadBuffer(length: number): Buffer {
    return this.payloads.take(length);
  }

  onRequest(r: NbdRequest): void {
    this.afterLargeWrite = r.type === CMD_WRITE && r.length >= LARGE_WRITE;
    if (this.fencedMessage !== undefined) {
      this.releasePayload(r);
      if (r.type !== CMD_DISC) this.writer.error(r.cookieHi, r.cookieLo, NBD_ESHUTDOWN, this.fencedMessage);
      return;
    }
    const e = this.export!;
    const rejection = this.validate(r, e);
    if (rejection) {
      this.releasePayload(r);
      this.writer.error(r.cookieHi, r.cookieLo, rejection[0], rejection[1]);
      return;
    }
    const fua = (r.flags & CMD_FLAG_FUA) !== 0;
    const device = e.device;
    switch (r.type) {
      case CMD_READ: {
        if (device.readNow !== undefined && r.length < POOLED_READ) {
          // A pooled buffer, back once the reply has gone to the kernel: a fresh 4 KiB buffer per
          // READ is garbage V8 collects late (+10 MiB over a 4 KiB random-read run).
          const data = this.payloads.take(r.length);
          const now = this.readNow(r, device, data);
          if (now === 'done') {
            // Answered after this parse pass, as a promise's would be: replying from inside it
            // measured 10-15% fewer 4 KiB reads per second (fio randread QD 32); for WRITE's
            // header-only replies, answering at once measured a little better. In flight until
            // then, so a DISC in the same pass waits for this reply.
            this.begin(r.length);
            queueMicrotask(() => {
              this.end(r.length);
              if (this.fencedMessage !== undefined) this.answerFenced(r);
              else if (this.phase !== 'closed') this.sendPooled(r, data);
              this.afterReply();
            });
            return;
          }
          // Declined or failed: the device wrote nothing it will write later (readNow is synchronous).
          this.payloads.give(data);
          if (now !== 'declined') return;
        }
        this.begin(r.length);
        const readInto = device.readInto?.bind(device);
        if (readInto === undefined || r.length < POOLED_READ) {
          this.track(r, r.length, () => device.read(r.offset, r.length), (data) =>
            this.writer.data(r.cookieHi, r.cookieLo, r.offset, data),
          );
          return;
        }
        // Large reads land in reused buffers, each taken back once its reply left: a fresh
        // 1 MiB buffer per READ costs its page faults every time.
        const buf = this.payloads.take(r.length);
        this.track(r, r.length, () => readInto(r.offset, buf).then(() => buf, (err: unknown) => {
          this.payloads.give(buf);
          throw err;
        }), (data) => this.sendPooled(r, data));
        return;
      }
      case CMD_WRITE: {
        const data = r.data!;
        if (!fua && device.writeNow !== undefined) {
          const now = this.writeNow(r, device, data);
          if (now === 'done') this.writer.ok(r.cookieHi, r.cookieLo);
          if (now !== 'declined') return this.releasePayload(r);
        }
        const held = this.parser!.heldBy(r);
        this.begin(held);
        // The buffer goes back to the pool once the write resolved; after a rejection the device
        // may still be reading it (BlockDevice.write), so it is left to the garbage collector.
        this.track(r, held, () => device.write(r.offset, data, { fua }), this.okFor(r), () => this.releasePayload(r));
        return;
      }
      case CMD_FLUSH:
        this.begin(0);
        this.track(r, 0, () => device.flush(), this.okFor(r));
        return;
      case CMD_TRIM:
        this.begin(0);
        this.track(r, 0, async () => {
          await device.discard(r.offset, r.length);
          if (fua) await device.flush();
        }, this.okFor(r));
        return;
      case CMD_WRITE_ZEROES: {
        this.begin(0);
        const noHole = (r.flags & CMD_FLAG_NO_HOLE) !== 0;
        // A device that cannot zero this range fast says so with ENOTSUP, having changed nothing.
        const fast = (r.flags & CMD_FLAG_FAST_ZERO) !== 0;
        this.track(r, 0, () => device.writeZeroes(r.offset, r.length, { noHole, fua, fast }), this.okFor(r));
        return;
      }
      case CMD_CACHE:
        // Advisory: there is no server-side cache to fill; the page cache of a file member or
        // the array's own read path decide what stays warm.
        this.writer.ok(r.cookieHi, r.cookieLo);
        return;
      case CMD_BLOCK_STATUS: {
        this.begin(0);
        const contexts = this.contexts;
        const allocation = contexts.some((c) => c.id === BASE_ALLOCATION_ID);
        this.track(r, 0, () => (allocation ? this.status(e, r) : Promise.resolve(undefined)), (descriptors) => {
          // One chunk per selected context; a context other than base:allocation (one a source
          // serves, such as llraid:epoch) has no status to give: one run, flags 0.
          const plain = Uint32Array.of(r.length, 0);
          contexts.forEach((c, i) => this.writer.blockStatus(r.cookieHi, r.cookieLo, c.id,
            c.id === BASE_ALLOCATION_ID && descriptors ? descriptors : plain, i === contexts.length - 1));
        });
        return;
      }
      case CMD_DISC:
        // proto.md: finish the outstanding requests, then close. DISC itself gets no reply.
        this.drain();
        return;
    }
  }

  // --- internals ---------------------------------------------------------------------------

  /**
   * [errno, message] when the request must be refused without touching the device: the one
   * place a request's command, flags and range are checked against what the export advertised.
   * A command or flag it did not advertise is EINVAL, as nbdkit answers; proto.md on FAST_ZERO:
   * a server that did not advertise NBD_FLAG_SEND_FAST_ZERO "SHOULD fail with NBD_EINVAL if the
   * NBD_CMD_FLAG_FAST_ZERO flag was set".
   */
  private validate(r: NbdRequest, e: NbdExport): [number, string] | undefined {
    const name = commandName(r.type);
    let allowed = e.offers(TFLAG_SEND_FUA) ? CMD_FLAG_FUA : 0;
    let writes = false;
    let ranged = true;
    /** The transmission flag the command needs, 0 when it needs none. */
    let needs = 0;
    switch (r.type) {
      case CMD_READ:
        if (this.writer.structured) allowed |= CMD_FLAG_DF;
        break;
      case CMD_WRITE:
        writes = true;
        if (r.data === undefined) {
          return [NBD_EINVAL, `WRITE of ${r.length} bytes exceeds the maximum payload of ${e.maxPayload}`];
        }
        break;
      case CMD_TRIM:
        writes = true;
        needs = TFLAG_SEND_TRIM;
        break;
      case CMD_WRITE_ZEROES:
        writes = true;
        needs = TFLAG_SEND_WRITE_ZEROES;
        allowed |= CMD_FLAG_NO_HOLE | (e.offers(TFLAG_SEND_FAST_ZERO) ? CMD_FLAG_FAST_ZERO : 0);
        break;
      case CMD_CACHE:
        break;
      case CMD_BLOCK_STATUS:
        allowed |= CMD_FLAG_REQ_ONE;
        if (this.contexts.length === 0) return [NBD_EINVAL, 'BLOCK_STATUS without a meta context negotiated'];
        if (r.length === 0) return [NBD_EINVAL, 'BLOCK_STATUS of zero bytes'];
        break;
      case CMD_FLUSH:
      case CMD_DISC:
        ranged = false;
        if (r.type === CMD_FLUSH) needs = TFLAG_SEND_FLUSH;
        if (r.offset !== 0 || r.length !== 0) {
          return [NBD_EINVAL, `${name} must have offset and length 0, found offset=${r.offset} length=${r.length}`];
        }
        break;
      default:
        return [NBD_EINVAL, `unknown command ${r.type}`];
    }
    if ((r.flags & ~allowed) !== 0) return [NBD_EINVAL, `${name} does not accept flags 0x${(r.flags & ~allowed).toString(16)} on export ${JSON.stringify(e.name)}`];
    if (writes && e.readOnly) return [NBD_EPERM, `${name} on read-only export ${JSON.stringify(e.name)}`];
    if (!e.offers(needs)) return [NBD_EINVAL, `${name} is not offered by export ${JSON.stringify(e.name)}`];
    if (!ranged) return undefined;
    if (r.offset + r.length > e.size) {
      // proto.md: writes past the end are ENOSPC, everything else EINVAL.
      const errno = r.type === CMD_WRITE || r.type === CMD_WRITE_ZEROES ? NBD_ENOSPC : NBD_EINVAL;
      return [errno, `${name} [${r.offset}, +${r.length}) reaches past the end of the export (${e.size} bytes)`];
    }
    if (r.offset % e.minBlock !== 0 || r.length % e.minBlock !== 0) {
      return [NBD_EINVAL, `${name} [${r.offset}, +${r.length}) is not aligned to the minimum block size ${e.minBlock}`];
    }
    if (r.type === CMD_READ && r.length > e.maxPayload) {
      return [NBD_EINVAL, `READ of ${r.length} bytes exceeds the maximum payload of ${e.maxPayload}`];
    }
    return undefined;
  }

  /**
   * A device's synchronous fast path (BlockDevice.readNow/writeNow): 'done' when it did the
   * request (the caller answers it), 'declined' when the caller must take the asynchronous path,
   * 'failed' when it threw, answered here with the error. No promise and no in-flight entry: at
   * 4 KiB those cost the event loop more than the copy itself (see positional-io.ts); and no
   * closure or array made per request either.
   */
  private readNow(r: NbdRequest, device: BlockDevice, out: Buffer): 'done' | 'declined' | 'failed' {
    try {
      return device.readNow!(r.offset, out) ? 'done' : 'declined';
    } catch (err) {
      this.answerFailed(r, err);
      return 'failed';
    }
  }

  /** writeNow of a WRITE's payload, passed in the one reused array (writeNow keeps no reference). */
  private writeNow(r: NbdRequest, device: BlockDevice, data: Buffer): 'done' | 'declined' | 'failed' {
    const parts = this.onePart;
    parts[0] = data;
    try {
      return device.writeNow!(r.offset, parts) ? 'done' : 'declined';
    } catch (err) {
      this.answerFailed(r, err);
      return 'failed';
    } finally {
      parts[0] = NO_BYTES;
    }
  }

  /** The error reply to a request that failed, from its error (nbdErrorNumber). */
  private answerFailed(r: NbdRequest, err: unknown): void {
    this.writer.error(r.cookieHi, r.cookieLo, nbdErrorNumber(err), (err as Error)?.message ?? String(err));
  }

  /**
   * A READ's reply from a pooled buffer: held (replyBytes) until the socket has handed it to the
   * kernel, then back to the pool, and reading resumes if only these bytes held it.
   */
  private sendPooled(r: NbdRequest, data: Buffer): void {
    this.replyBytes += data.length;
    this.writer.data(r.cookieHi, r.cookieLo, r.offset, data, () => {
      this.replyBytes -= data.length;
      this.payloads.give(data);
      this.maybeResume();
    });
  }

  private begin(bytes: number): void {
    this.inFlight++;
    this.inFlightBytes += bytes;
  }

  private okFor(r: NbdRequest): () => void {
    return () => this.writer.ok(r.cookieHi, r.cookieLo);
  }

  /** A WRITE's payload buffer back to the pool: the request is done with it. */
  private releasePayload(r: NbdRequest): void {
    if (r.data !== undefined && r.data.length > 0) this.payloads.give(r.data);
  }

  /**
   * Runs one device operation; answers it unless the connection is gone. `resolved` runs once the
   * operation has resolved, before the answer.
   */
  private track<T>(r: NbdRequest, bytes: number, op: () => Promise<T>, answer: (value: T) => void, resolved?: () => void): void {
    let p: Promise<T>;
    try {
      p = op();
    } catch (err) {
      p = Promise.reject(err);
    }
    p.then(
      (value) => {
        resolved?.();
        this.end(bytes);
        if (this.fencedMessage !== undefined) this.answerFenced(r);
        else if (this.phase !== 'closed') answer(value);
        this.afterReply();
      },
      (err: unknown) => {
        this.end(bytes);
        trace('nbd', 'debug', () => `connection ${this.id}: ${commandName(r.type)} [${r.offset}, +${r.length}) failed: ${describeError(err)}`);
        if (this.fencedMessage !== undefined) this.answerFenced(r);
        else if (this.phase !== 'closed') this.answerFailed(r, err);
        this.afterReply();
      },
    );
  }

  /** A request that settled after the fence: whatever it did, the client is told it failed. */
  private answerFenced(r: NbdRequest): void {
    if (this.phase !== 'closed') this.writer.error(r.cookieHi, r.cookieLo, NBD_ESHUTDOWN, this.fencedMessage!);
  }

  private end(bytes: number): void {
    this.inFlight--;
    this.inFlightBytes -= bytes;
  }

  private afterReply(): void {
    if (this.inFlight === 0) this.fenceDone?.();
    if (this.phase === 'draining' && this.inFlight === 0) this.hangUp();
    else if (this.phase === 'closed' && this.inFlight === 0) this.finish();
    else {
      this.checkCaps();
      this.maybeResume();
    }
  }

  /** The socket is closed and nothing of this connection runs: settled, and its export released. */
  private finish(): void {
    this.settle();
    this.releaseIfSettled();
  }

  /** Gives the export back to its source, once, when the connection has settled. */
  private releaseIfSettled(): void {
    const a = this.attachment;
    if (a === undefined || this.phase !== 'closed' || this.inFlight > 0) return;
    this.attachment = undefined;
    void Promise.resolve()
      .then(() => a.release?.())
      .catch((err: unknown) => this.log(`releasing export ${JSON.stringify(a.export.name)} failed: ${describeError(err)}`));
  }

  private async status(e: NbdExport, r: NbdRequest): Promise<Uint32Array> {
    const extents: Extent[] = e.device.extents
      ? await e.device.extents(r.offset, r.length)
      : [{ length: r.length, hole: false, zero: false }];
    return encodeExtents(extents, r.length, (r.flags & CMD_FLAG_REQ_ONE) !== 0);
  }

  /** Where the next socket read lands, in direct mode (socket-receiver.ts). */
  private nextTarget(): Uint8Array {
    const rest = this.phase === 'transmission' ? this.parser!.payloadTarget(this.input) : undefined;
    this.intoPayload = rest !== undefined && rest.length >= DIRECT_PAYLOAD;
    if (this.intoPayload) return rest!;
    let ring = this.ring!;
    const queued = this.input.length;
    if (queued === 0) this.fill = 0;
    else if (ring.length - this.fill < MIN_RING_READ) {
      if (queued <= ring.length - MIN_RING_READ) {
        // Rare (only the ring's tail ends mid-header) and small: via a copy, since the queued
        // bytes may overlap where they go, and may lie in an earlier ring.
        const rest = this.takeCopy(queued);
        rest.copy(ring, 0);
        this.input.push(ring.subarray(0, queued));
        this.fill = queued;
      } else {
        // Paused with the ring full of requests not yet admitted: they stay where they are and
        // reading goes on in another ring. The ring before this one is free again once every
        // queued byte lies in this one: input is consumed in order, so the queued bytes are the
        // last `queued` that landed, and this ring holds the last `fill`. So two rings take
        // turns; a new one per switch was 60 garbage rings (15 MiB) a second under fio's 1 MiB
        // writes at QD32, and 70-85 MiB peaks where QD8 peaks at 62 (now 61-63 at QD32).
        const spare = this.spareRing;
        this.spareRing = ring;
        this.ring = ring = spare !== undefined && queued <= this.fill ? spare : Buffer.allocUnsafeSlow(RING_BYTES);
        this.fill = 0;
      }
    }
    return this.afterLargeWrite ? ring.subarray(this.fill, this.fill + AFTER_LARGE_WRITE) : ring.subarray(this.fill);
  }

  /** `n` bytes landed where nextTarget() said, in direct mode. */
  private landed(n: number): void {
    if (this.intoPayload) {
      if (this.phase !== 'transmission') return;
      this.parser!.payloadLanded(n, this.input);
      this.maybePause();
      this.checkCaps();
      return;
    }
    const chunk = this.ring!.subarray(this.fill, this.fill + n);
    this.fill += n;
    this.received(chunk);
  }

  private received(chunk: Buffer): void {
    this.input.push(chunk);
    if (this.phase === 'handshake') {
      this.serveWaiter();
      this.checkCaps();
      return;
    }
    if (this.phase !== 'transmission') {
      this.input.clear();
      return;
    }
    this.parser!.parse(this.input);
    this.maybePause();
    this.checkCaps();
  }

  private drained(): void {
    if (this.phase !== 'handshake') {
      this.maybeResume();
      return;
    }
    if (this.readingPaused) {
      this.readingPaused = false;
      this.socket.resume();
    }
    this.serveWaiter();
  }

  /** Hands the handshake's waiting read or skip what has arrived, if it may have it now. */
  private serveWaiter(): void {
    const w = this.waiter;
    if (w === undefined) return;
    if (w.skip) {
      w.left -= this.input.skip(w.left);
      if (w.left > 0) return;
      this.waiter = undefined;
      w.resolve();
      return;
    }
    if (this.input.length < w.n || this.socket.writableNeedDrain) return;
    this.waiter = undefined;
    w.resolve(this.takeCopy(w.n));
  }

  /** The next `n` queued bytes as a buffer of their own: a view could be overwritten by a later read. */
  private takeCopy(n: number): Buffer {
    const out = Buffer.allocUnsafe(n);
    this.input.takeInto(out, 0);
    return out;
  }

  /**
   * The caps behind backpressure: reached only by a client that gets past it (or by caps set
   * below one message plus CAP_SLACK), and then the connection is dropped rather than grown.
   */
  private checkCaps(): void {
    if (this.phase === 'closed') return;
    const unsent = this.socket.writableLength;
    if (unsent > this.limits.maxUnsentBytes) {
      this.drop(`${unsent} reply bytes wait for it to read them, more than the ${this.limits.maxUnsentBytes} one connection may hold`);
    } else if (this.input.length > this.limits.maxInputBytes) {
      this.drop(`${this.input.length} received bytes wait to be parsed, more than the ${this.limits.maxInputBytes} one connection may hold`);
    }
  }

  private drop(why: string): void {
    this.log(`dropping client: ${why}`);
    this.phase = 'closed';
    this.input.clear();
    this.socket.destroy();
  }

  /** True while the next request (or any, if none is parsed yet) may not start. */
  private blocked(): boolean {
    return this.parser === undefined || !this.accepting(this.parser.pendingBytes);
  }

  private maybePause(): void {
    if (!this.readingPaused && this.phase === 'transmission' && this.blocked()) {
      this.readingPaused = true;
      this.socket.pause();
    }
  }

  private maybeResume(): void {
    if (!this.readingPaused || this.blocked()) return;
    this.readingPaused = false;
    this.parser!.parse(this.input);
    if (this.blocked()) this.readingPaused = true;
    else this.socket.resume();
  }

  private drain(): void {
    this.phase = 'draining';
    this.input.clear();
    // From here on whatever arrives is dropped (onData), so reading costs nothing; and a socket
    // left paused with bytes unread would never see the client's FIN after the hang-up.
    if (this.readingPaused) {
      this.readingPaused = false;
      this.socket.resume();
    }
    if (this.inFlight === 0) this.hangUp();
  }

  /**
   * Closes our side once every reply is in the socket. A client that stops reading them (or never
   * closes its side) would hold the connection, and a shutdown waiting for it, forever: it is cut
   * off once closeTimeoutMs pass with no reply byte taken.
   */
  private hangUp(): void {
    if (this.hungUp) return;
    this.hungUp = true;
    this.writer.flush();
    this.socket.end();
    let left = Infinity;
    const watch = (): void => {
      if (this.socket.destroyed) return;
      if (this.socket.writableLength < left) {
        left = this.socket.writableLength;
        setTimeout(watch, this.limits.closeTimeoutMs).unref();
        return;
      }
      this.log(`client took none of its last ${left} reply bytes in ${this.limits.closeTimeoutMs} ms after the hang-up, nor closed; cutting it off`);
      this.socket.destroy();
    };
    watch();
  }

  private closed(): void {
    // After STARTTLS both the plain socket and its TLS socket may report the close.
    if (this.sawClose) return;
    this.sawClose = true;
    trace('nbd', 'info', () => `connection ${this.id}: closed${this.inFlight > 0 ? `, ${this.inFlight} requests still running (their replies are dropped)` : ''}`);
    this.phase = 'closed';
    this.input.clear();
    const w = this.waiter;
    this.waiter = undefined;
    w?.reject(closedError(w.n));
    if (this.parser?.midRequest && this.fencedMessage === undefined) this.log('client went away in the middle of a WRITE payload; that write was not applied');
    const abandoned = this.parser?.abandon();
    if (abandoned !== undefined) this.payloads.give(abandoned);
    if (this.inFlight === 0) {
      this.fenceDone?.();
      this.finish();
    }
  }
}

/** `CN=...` of a certificate subject, or what there is of it. */
function describeSubject(subject: { CN?: string | string[] } | undefined): string {
  const cn = subject?.CN;
  return cn === undefined ? 'a certificate without a CN' : `CN=${Array.isArray(cn) ? cn.join(',') : cn}`;
}

function closedError(n: number): NbdError {
  return new NbdError('NBD_CLOSED', `connection closed while ${n} more bytes were expected`);
}

/**
 * Turns a device's extents into (length, flags) pairs for a request of `length` bytes: zero-length
 * runs dropped, neighbours with equal flags merged, the total cut at `length`, and at most one
 * pair with REQ_ONE. A device that reports nothing usable is answered as "all data", which is
 * always true.
 */
export function encodeExtents(extents: readonly Extent[], length: number, reqOne: boolean): Uint32Array {
  const out: number[] = [];
  let covered = 0;
  for (const x of extents) {
    if (covered >= length) break;
    if (!(x.length > 0)) continue;
    const n = Math.min(x.length, length - covered);
    const flags = (x.hole ? STATE_HOLE : 0) | (x.zero ? STATE_ZERO : 0);
    const last = out.length - 2;
    if (last >= 0 && out[last + 1] === flags) out[last] = out[last]! + n;
    else {
      if (out.length / 2 >= MAX_STATUS_DESCRIPTORS) break;
      out.push(n, flags);
    }
    covered += n;
    if (reqOne) break;
  }
  if (out.length === 0) out.push(length, 0);
  return Uint32Array.from(out);
}
