// The client's handshake I/O: exact reads (`read(n)`) over whatever stream carries the
// negotiation, which changes once (plain socket → TLS) after STARTTLS. Only for the handshake:
// the transmission phase parses replies straight from socket chunks (reply-parser.ts).

import type { Duplex } from 'node:stream';
import { BufferList } from '../buffer-list.js';
import { NbdError } from '../errors.js';

export class HandshakeStream {
  private readonly input = new BufferList();
  private stream: Duplex | undefined;
  private waiter: { n: number; resolve: (b: Buffer) => void; reject: (e: Error) => void } | undefined;
  /** Set once the stream ended or failed: every read rejects with it. */
  private failure: Error | undefined;
  /** Takes received bytes (a copy: a plain socket's chunk is reused after the call). */
  readonly onData = (chunk: Buffer): void => {
    this.input.push(Buffer.from(chunk));
    this.serve();
  };
  private readonly onEnd = (): void => this.fail(new NbdError('NBD_CLOSED', `${this.uri}: the server closed the connection during the handshake`));
  private readonly onError = (err: Error): void => this.fail(err);

  constructor(private readonly uri: string) {}

  /** Reads from `stream` from now on (the previous one, if any, is let go first). */
  attach(stream: Duplex): void {
    this.detach();
    this.stream = stream;
    stream.on('data', this.onData);
    stream.on('end', this.onEnd);
    stream.on('close', this.onEnd);
    stream.on('error', this.onError);
  }

  /** Stops listening; returns bytes received and not read (none, from an honest server). */
  detach(): Buffer {
    const s = this.stream;
    if (s !== undefined) {
      s.off('data', this.onData);
      s.off('end', this.onEnd);
      s.off('close', this.onEnd);
      s.off('error', this.onError);
      this.stream = undefined;
    }
    return this.input.take(this.input.length);
  }

  read(n: number): Promise<Buffer> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.waiter = { n, resolve, reject };
      this.serve();
    });
  }

  write(data: Buffer): void {
    this.stream?.write(data);
  }

  private serve(): void {
    const w = this.waiter;
    if (w === undefined || this.input.length < w.n) return;
    this.waiter = undefined;
    w.resolve(this.input.take(w.n));
  }

  private fail(err: Error): void {
    this.failure ??= err;
    const w = this.waiter;
    this.waiter = undefined;
    w?.reject(this.failure);
  }
}
