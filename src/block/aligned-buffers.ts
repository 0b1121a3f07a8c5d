// Bounce buffers for O_DIRECT. O_DIRECT needs memory aligned to the device's DMA alignment, but
// JavaScript cannot see or choose a buffer's address. So each slab is probed once: at successive
// 16-byte offsets into it, an O_DIRECT read of the first block and (when writable) a write of the
// same bytes back, until the kernel accepts both; from that offset on, every 4 KiB step is as
// aligned. The write-back matters: a read of a hole succeeds whatever the alignment.

import { IoError, NotSupportedError } from './errors.js';
import { readP, writeP } from '../common/callback-fs.js';

const PIECE = 1024 * 1024;
const PIECES_PER_SLAB = 4;
const PAGE = 4096;

export class AlignedBuffers {
  /** Free aligned pieces of PIECE bytes each. */
  private readonly free: Buffer[] = [];
  private readonly waiters: Array<(b: Buffer) => void> = [];

  private constructor(
    private readonly fd: number,
    private readonly blockSize: number,
    private readonly path: string,
    private readonly writable: boolean,
  ) {}

  static async probe(fd: number, blockSize: number, size: number, path: string, writable: boolean): Promise<AlignedBuffers> {
    const pool = new AlignedBuffers(fd, blockSize, path, writable);
    await pool.addSlab(size);
    return pool;
  }

  async read(fd: number, out: Buffer, offset: number): Promise<void> {
    for (let done = 0; done < out.length; ) {
      const piece = await this.take();
      try {
        const n = Math.min(PIECE, out.length - done);
        let got = 0;
        while (got < n) {
          const r = await readP(fd, piece, got, n - got, offset + done + got);
          if (r === 0) {
            piece.fill(0, got, n);
            break;
          }
          got += r;
        }
        piece.copy(out, done, 0, n);
        done += n;
      } finally {
        this.give(piece);
      }
    }
  }

  async write(fd: number, data: Uint8Array, offset: number): Promise<void> {
    for (let done = 0; done < data.length; ) {
      const piece = await this.take();
      try {
        const n = Math.min(PIECE, data.length - done);
        piece.set(data.subarray(done, done + n));
        let put = 0;
        while (put < n) put += await writeP(fd, piece, put, n - put, offset + done + put);
        done += n;
      } finally {
        this.give(piece);
      }
    }
  }

  private async take(): Promise<Buffer> {
    const b = this.free.pop();
    if (b) return b;
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  private give(b: Buffer): void {
    const w = this.waiters.shift();
    if (w) w(b);
    else this.free.push(b);
  }

  private async addSlab(deviceSize: number): Promise<void> {
    if (deviceSize < this.blockSize) {
      throw new NotSupportedError(`${this.path}: too small (${deviceSize} bytes) for O_DIRECT probing`);
    }
    const slab = Buffer.allocUnsafeSlow(PIECE * PIECES_PER_SLAB + PAGE);
    for (let k = 0; k < PAGE; k += 16) {
      try {
        await readP(this.fd, slab, k, this.blockSize, 0);
        if (this.writable) await writeP(this.fd, slab, k, this.blockSize, 0);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EINVAL') continue;
        throw new IoError(`${this.path}: O_DIRECT probe failed: ${(err as Error).message}`, { cause: err });
      }
      for (let i = 0; i < PIECES_PER_SLAB; i++) this.free.push(slab.subarray(k + i * PIECE, k + (i + 1) * PIECE));
      return;
    }
    throw new NotSupportedError(`${this.path}: no buffer alignment accepted for O_DIRECT`);
  }
}
