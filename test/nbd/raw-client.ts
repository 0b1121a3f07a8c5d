// A byte-level NBD peer for tests that need to send what no real client would (bad magic, a
// payload cut short) or to watch reply order: it writes raw bytes and reads exact byte counts.

import { createConnection, type Socket } from 'node:net';

export class RawPeer {
  private buf = Buffer.alloc(0);
  private wanted: { n: number; resolve: (b: Buffer) => void; reject: (e: Error) => void } | undefined;
  private ended = false;
  readonly closed: Promise<void>;

  private constructor(readonly socket: Socket) {
    socket.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.pump();
    });
    socket.on('error', () => undefined);
    this.closed = new Promise((resolve) =>
      socket.on('close', () => {
        this.ended = true;
        this.pump();
        resolve();
      }),
    );
  }

  static connect(path: string): Promise<RawPeer> {
    return new Promise((resolve, reject) => {
      const s = createConnection(path, () => resolve(new RawPeer(s)));
      s.once('error', reject);
    });
  }

  send(...parts: Buffer[]): void {
    this.socket.write(Buffer.concat(parts));
  }

  read(n: number): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      this.wanted = { n, resolve, reject };
      this.pump();
    });
  }

  /** Bytes received and not yet read. */
  get pending(): number {
    return this.buf.length;
  }

  private pump(): void {
    const w = this.wanted;
    if (!w) return;
    if (this.buf.length >= w.n) {
      this.wanted = undefined;
      const out = this.buf.subarray(0, w.n);
      this.buf = this.buf.subarray(w.n);
      w.resolve(out);
    } else if (this.ended) {
      this.wanted = undefined;
      w.reject(new Error(`connection closed with ${this.buf.length} of ${w.n} expected bytes`));
    }
  }

  /** Greeting, client flags, then NBD_OPT_GO for `name`; returns the export size. */
  async go(name: string, clientFlags = 3): Promise<number> {
    await this.read(18);
    this.send(u32(clientFlags), option(7, Buffer.concat([u32(Buffer.byteLength(name)), Buffer.from(name), Buffer.from([0, 0])])));
    let size = -1;
    for (;;) {
      const h = await this.read(20);
      const type = h.readUInt32BE(12);
      const body = await this.read(h.readUInt32BE(16));
      if (type === 3 && body.readUInt16BE(0) === 0) size = Number(body.readBigUInt64BE(2));
      if (type === 1) return size;
      if (type >= 0x80000000) throw new Error(`GO refused with reply type 0x${type.toString(16)}`);
    }
  }

  /** One simple reply: [error, cookie]. */
  async simpleReply(): Promise<{ error: number; cookie: bigint }> {
    const h = await this.read(16);
    if (h.readUInt32BE(0) !== 0x67446698) throw new Error(`expected a simple reply, found magic 0x${h.readUInt32BE(0).toString(16)}`);
    return { error: h.readUInt32BE(4), cookie: h.readBigUInt64BE(8) };
  }
}

export function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

export function option(code: number, data: Buffer): Buffer {
  const h = Buffer.alloc(16);
  h.writeBigUInt64BE(0x49484156454f5054n, 0);
  h.writeUInt32BE(code, 8);
  h.writeUInt32BE(data.length, 12);
  return Buffer.concat([h, data]);
}

export function request(type: number, cookie: bigint, offset: number, length: number, flags = 0, magic = 0x25609513): Buffer {
  const h = Buffer.alloc(28);
  h.writeUInt32BE(magic, 0);
  h.writeUInt16BE(flags, 4);
  h.writeUInt16BE(type, 6);
  h.writeBigUInt64BE(cookie, 8);
  h.writeBigUInt64BE(BigInt(offset), 16);
  h.writeUInt32BE(length, 24);
  return h;
}
