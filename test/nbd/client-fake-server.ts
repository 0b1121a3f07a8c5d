// A scripted NBD server for the client's failure tests: a real unix socket whose every byte the
// test decides. `honestHandshake` speaks fixed newstyle up to GO (optionally accepting an
// llraid:epoch meta context, or refusing GO); `readRequest` and the reply encoders let a test
// answer requests rightly, wrongly, or not at all.

import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import {
  IHAVEOPT,
  INFO_EXPORT,
  NBD_MAGIC,
  OPTION_REPLY_MAGIC,
  OPT_GO,
  OPT_SET_META_CONTEXT,
  OPT_STRUCTURED_REPLY,
  REP_ACK,
  REP_ERR_UNSUP,
  REP_INFO,
  REP_META_CONTEXT,
  REPLY_FLAG_DONE,
  REPLY_TYPE_ERROR,
  SIMPLE_REPLY_MAGIC,
  STRUCTURED_REPLY_MAGIC,
  TFLAG_HAS_FLAGS,
  TFLAG_SEND_FLUSH,
  TFLAG_SEND_FUA,
} from '../../src/nbd/protocol.js';

/** Exact reads from a socket, for a scripted peer. */
export class Reader {
  private buf = Buffer.alloc(0);
  private wake: (() => void) | undefined;
  private ended = false;
  constructor(socket: Socket) {
    socket.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.wake?.();
    });
    socket.on('close', () => {
      this.ended = true;
      this.wake?.();
    });
    socket.on('error', () => undefined);
  }
  async read(n: number): Promise<Buffer> {
    while (this.buf.length < n) {
      if (this.ended) throw new Error('peer closed');
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }
}

export interface FakeServer {
  socket: string;
  uri(exportName?: string): string;
  close(): Promise<void>;
}

/** Listens on `<dir>/fake.sock`; `handle` runs for every connection. */
export async function fakeServer(dir: string, handle: (socket: Socket, reader: Reader) => Promise<void> | void): Promise<FakeServer> {
  const path = join(dir, `fake-${Math.random().toString(36).slice(2)}.sock`);
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    void Promise.resolve(handle(socket, new Reader(socket))).catch(() => socket.destroy());
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  return {
    socket: path,
    uri: (name = 'x') => `nbd+unix:///${name}?socket=${path}`,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

export function optionReply(option: number, type: number, body = Buffer.alloc(0)): Buffer {
  const h = Buffer.alloc(20);
  h.writeBigUInt64BE(OPTION_REPLY_MAGIC, 0);
  h.writeUInt32BE(option, 8);
  h.writeUInt32BE(type, 12);
  h.writeUInt32BE(body.length, 16);
  return Buffer.concat([h, body]);
}

export interface HandshakeScript {
  /** Answer SET_META_CONTEXT with every query as a context (an llraid member service would). */
  acceptContexts?: boolean;
  /** Refuse GO with this reply type and message instead of answering it. */
  refuseGo?: { type: number; message: string };
  size?: number;
  /** Answer STRUCTURED_REPLY with NBD_REP_ERR_UNSUP (default: acknowledge it). */
  structured?: boolean;
}

/**
 * Greets, then answers options until GO: STRUCTURED_REPLY acknowledged, SET_META_CONTEXT as the
 * script says, GO with NBD_INFO_EXPORT (flush and FUA offered); anything else is unsupported.
 * Returns false when GO was refused.
 */
export async function honestHandshake(socket: Socket, reader: Reader, script: HandshakeScript = {}): Promise<boolean> {
  const greeting = Buffer.alloc(18);
  greeting.writeBigUInt64BE(NBD_MAGIC, 0);
  greeting.writeBigUInt64BE(IHAVEOPT, 8);
  greeting.writeUInt16BE(3, 16);
  socket.write(greeting);
  await reader.read(4);
  for (;;) {
    const h = await reader.read(16);
    const option = h.readUInt32BE(8);
    const data = await reader.read(h.readUInt32BE(12));
    if (option === OPT_STRUCTURED_REPLY) socket.write(optionReply(option, script.structured === false ? REP_ERR_UNSUP : REP_ACK));
    else if (option === OPT_SET_META_CONTEXT) {
      if (script.acceptContexts) {
        const nameLength = data.readUInt32BE(0);
        let at = 4 + nameLength + 4;
        while (at < data.length) {
          const n = data.readUInt32BE(at);
          const ctx = Buffer.alloc(4 + n);
          ctx.writeUInt32BE(7, 0);
          data.copy(ctx, 4, at + 4, at + 4 + n);
          socket.write(optionReply(option, REP_META_CONTEXT, ctx));
          at += 4 + n;
        }
      }
      socket.write(optionReply(option, REP_ACK));
    } else if (option === OPT_GO) {
      if (script.refuseGo) {
        socket.write(optionReply(option, script.refuseGo.type, Buffer.from(script.refuseGo.message)));
        return false;
      }
      const info = Buffer.alloc(12);
      info.writeUInt16BE(INFO_EXPORT, 0);
      info.writeBigUInt64BE(BigInt(script.size ?? 1024 * 1024), 2);
      info.writeUInt16BE(TFLAG_HAS_FLAGS | TFLAG_SEND_FLUSH | TFLAG_SEND_FUA, 10);
      socket.write(optionReply(option, REP_INFO, info));
      socket.write(optionReply(option, REP_ACK));
      return true;
    } else socket.write(optionReply(option, REP_ERR_UNSUP));
  }
}

export interface Request {
  type: number;
  cookie: Buffer;
  offset: number;
  length: number;
}

/** Reads one request (and drops a WRITE's payload). */
export async function readRequest(reader: Reader): Promise<Request> {
  const h = await reader.read(28);
  const r = { type: h.readUInt16BE(6), cookie: Buffer.from(h.subarray(8, 16)), offset: Number(h.readBigUInt64BE(16)), length: h.readUInt32BE(24) };
  if (r.type === 1) await reader.read(r.length);
  return r;
}

export function simpleReply(cookie: Buffer, errno = 0, magic = SIMPLE_REPLY_MAGIC): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt32BE(magic, 0);
  b.writeUInt32BE(errno, 4);
  cookie.copy(b, 8);
  return b;
}

export function errorChunk(cookie: Buffer, errno: number, message: string): Buffer {
  const msg = Buffer.from(message);
  const b = Buffer.alloc(20 + 6 + msg.length);
  b.writeUInt32BE(STRUCTURED_REPLY_MAGIC, 0);
  b.writeUInt16BE(REPLY_FLAG_DONE, 4);
  b.writeUInt16BE(REPLY_TYPE_ERROR, 6);
  cookie.copy(b, 8);
  b.writeUInt32BE(6 + msg.length, 16);
  b.writeUInt32BE(errno, 20);
  b.writeUInt16BE(msg.length, 24);
  msg.copy(b, 26);
  return b;
}

/** A structured chunk of `type` with `payload`, DONE when `done`. */
export function chunk(cookie: Buffer, type: number, payload: Buffer, done: boolean): Buffer {
  const h = Buffer.alloc(20);
  h.writeUInt32BE(STRUCTURED_REPLY_MAGIC, 0);
  h.writeUInt16BE(done ? REPLY_FLAG_DONE : 0, 4);
  h.writeUInt16BE(type, 6);
  cookie.copy(h, 8);
  h.writeUInt32BE(payload.length, 16);
  return Buffer.concat([h, payload]);
}

export function u64(n: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(n));
  return b;
}
