// A BlockDevice over a regular file or a block device: positional I/O on one file descriptor,
// durable flush with fdatasync, FUA through a second descriptor opened O_DSYNC, and optional
// O_DIRECT through page-aligned bounce buffers. Members of arrays are FileDevices.

import { constants, readFileSync, type Stats } from 'node:fs';
import { checkRange, DEFAULT_CAPABILITIES, type BlockDevice, type DeviceCapabilities, type WriteOptions, type ZeroOptions } from './block-device.js';
import { BlockError, BusyError, InvalidRequestError, IoError, NoSpaceError, NotSupportedError, ReadOnlyError, ShutdownError } from './errors.js';
import { lockExclusive } from './exclusive-lock.js';
import { blockDeviceProgress, DeadlineIo } from './deadline-io.js';
import { inMemoryFilesystem, unboundedWaitFilesystem } from './filesystem-kind.cjs';
import { allocateFileRange, discardBlockRange, punchFileHole, zeroFileRange } from './file-space.js';
import { AlignedBuffers } from './aligned-buffers.js';
import { byteLength, InlineIo, NowaitIo, POOL_IO, type InlinePositionalIo, type PositionalIo } from './positional-io.js';
import { loadNowait } from './nowait-io.js';
import { beforeChange } from './copy-before-write.js';
import { close, fdatasync, fstat, ftruncate, open } from '../common/callback-fs.js';
import { describeError, trace } from '../common/trace.js';

/** Zeroing at least this large punches a hole (one child process) instead of writing zeroes. */
const PUNCH_THRESHOLD = 1024 * 1024;
const ZERO_CHUNK = Buffer.alloc(1024 * 1024);

export interface FileDeviceOptions {
  readOnly?: boolean;
  /** Open with O_DIRECT: bypass the page cache. Requests must be aligned to `blockSize`. */
  direct?: boolean;
  /** Create the file when missing, sparse, with this size in bytes (regular files only). */
  create?: { size: number };
  /** Logical block size to report; default 512 (4096 with `direct` on a regular file). */
  blockSize?: number;
  /**
   * Make small requests synchronously when that cannot wait for a device (positional-io.ts):
   * with RWF_NOWAIT on disks, while they are fast on tmpfs. Default: setInlineIoDefault(), true
   * unless changed; ignored with `direct`.
   */
  inline?: boolean;
  /**
   * Take the file for this process alone (exclusive-lock.ts): a writable open that another opener
   * holds fails with BusyError naming it. Members of arrays and served files are opened so.
   */
  exclusive?: boolean;
}

let inlineByDefault = true;

/**
 * Whether FileDevices opened from now on without an `inline` option make small requests inline.
 * A process-wide setting for the CLI (LLRAID_INLINE_IO=0): every request through the pool, to
 * compare, or should an inline path ever misbehave. Inline calls are bounded either way: a disk
 * that hangs holds a pool thread under the member deadline, never the event loop.
 */
export function setInlineIoDefault(enabled: boolean): void {
  inlineByDefault = enabled;
}

export class FileDevice implements BlockDevice {
  readonly path: string;
  /** Changes only in grow(). */
  size: number;
  readonly blockSize: number;
  readonly readOnly: boolean;
  readonly isBlockDevice: boolean;
  /** What the file is (fileIdOf): two paths name one member exactly when these are equal. */
  readonly fileId: string;
  /**
   * A regular file whose blocks were all allocated when opened (a CSI member, preallocated so
   * that the capacity a volume was promised is really there). Such a file is never given back
   * blocks: a discard does nothing and zeroing keeps the blocks (fallocate --zero-range). A
   * punched hole would need a new block at the next write, which a disk filled meanwhile by
   * other volumes cannot give: the member would fail with ENOSPC. Sparse files (the CLI's
   * thin members) are punched as before.
   */
  readonly thick: boolean;
  /**
   * A regular file zeroes large ranges with fallocate (punched, or zeroed in place when thick):
   * fast zeroing (writeZeroes). A thick file never gives blocks back, so discarding it would do
   * nothing: no trim.
   */
  readonly capabilities: DeviceCapabilities;
  /** Valid while open; -1 once closed. */
  private fd: number;
  /** A second descriptor with O_DSYNC for FUA writes, opened on first use. */
  private syncFd: Promise<number> | undefined;
  private readonly flags: number;
  private readonly bounce: AlignedBuffers | undefined;
  /** How the buffered descriptor's requests are made; FUA writes always use the pool. */
  private readonly io: PositionalIo;
  /** `io` when it may go inline: the readNow/writeNow fast paths use it. */
  private readonly inline: InlinePositionalIo | undefined;
  /**
   * The deadline of a member whose requests may wait for a device (every one but tmpfs/ramfs
   * files): every request that is not answered inline with RWF_NOWAIT, FUA and flush included,
   * goes through it (deadline-io.ts).
   */
  private readonly deadline: DeadlineIo | undefined;
  /**
   * The file is on a filesystem that can wait without bound (FUSE, NFS, ...): even fstat is not
   * asked outside the deadline.
   */
  private readonly unbounded: boolean;
  /**
   * The file is on tmpfs or ramfs, where the page cache is the storage: fdatasync and O_DSYNC
   * complete without doing anything (shmem has no fsync to run), so FUA is a plain write and a
   * flush has nothing to wait for. Sent to the thread pool anyway, each cost a hop of 20-50 µs,
   * and md's bitmap write-outs (a FUA write per member) held every writer of a Clean chunk.
   */
  private readonly inMemory: boolean;

  private constructor(path: string, fd: number, flags: number, size: number, blockSize: number, readOnly: boolean, st: Stats, io: PositionalIo, unbounded: boolean, inMemory: boolean, bounce?: AlignedBuffers) {
    this.path = path;
    this.fileId = fileIdOf(st);
    this.thick = st.isFile() && st.size > 0 && st.blocks * 512 >= st.size;
    this.fd = fd;
    this.flags = flags;
    this.size = size;
    this.blockSize = blockSize;
    this.readOnly = readOnly;
    this.isBlockDevice = st.isBlockDevice();
    this.capabilities = { ...DEFAULT_CAPABILITIES, trim: !this.thick, fastZero: st.isFile() };
    this.bounce = bounce;
    this.io = io;
    this.inline = io instanceof InlineIo || io instanceof NowaitIo ? io : undefined;
    this.deadline = io instanceof DeadlineIo ? io : io instanceof NowaitIo && io.slow instanceof DeadlineIo ? io.slow : undefined;
    this.unbounded = unbounded;
    this.inMemory = inMemory;
  }

  static async open(path: string, options: FileDeviceOptions = {}): Promise<FileDevice> {
    const readOnly = options.readOnly ?? false;
    let flags = readOnly ? constants.O_RDONLY : constants.O_RDWR;
    if (options.direct) flags |= constants.O_DIRECT;
    const exclusive = (options.exclusive ?? false) && !readOnly;
    let fd: number;
    try {
      fd = await openNoAtime(path, flags | (options.create && !readOnly ? constants.O_CREAT : 0));
    } catch (err) {
      throw mapOpenError(path, err, options.direct ?? false);
    }
    try {
      let st = await fstat(fd);
      if (exclusive && st.isBlockDevice()) {
        // O_EXCL on a block device is the kernel's own claim (mounts, mdadm and mkfs honour it).
        // It takes effect only at open, so the device is opened again with it.
        const plain = fd;
        try {
          fd = await open(path, flags | constants.O_EXCL);
        } catch (err) {
          throw (err as NodeJS.ErrnoException).code === 'EBUSY' ? new BusyError(`${path}: block device in use (mounted, or held by mdadm, device-mapper or another llraid engine); stop that user first`) : mapOpenError(path, err, options.direct ?? false);
        } finally {
          await close(plain).catch((e: unknown) => trace('block', 'debug', () => `${path}: closing the plain descriptor: ${describeError(e)}`));
        }
        st = await fstat(fd);
      }
      if (exclusive) await lockExclusive(fd, path, st);
      let size: number;
      let blockSize = options.blockSize ?? (options.direct ? 4096 : 512);
      if (st.isBlockDevice()) {
        ({ size, blockSize } = blockDeviceGeometry(st, options.blockSize));
      } else if (st.isFile()) {
        if (options.create && st.size === 0) {
          await ftruncate(fd, options.create.size);
          size = options.create.size;
        } else size = st.size;
      } else {
        throw new InvalidRequestError(`${path}: not a regular file or block device`);
      }
      const bounce = options.direct ? await AlignedBuffers.probe(fd, blockSize, size, path, !readOnly) : undefined;
      const io = positionalIo(path, st, options);
      const unbounded = st.isFile() && !options.direct && unboundedWaitFilesystem(path) !== undefined;
      const inMemory = st.isFile() && inMemoryFilesystem(path) !== undefined;
      return new FileDevice(path, fd, flags, size, blockSize, readOnly, st, io, unbounded, inMemory, bounce);
    } catch (err) {
      // The open failed already; a close that fails too only says less than that error.
      await close(fd).catch((e: unknown) => trace('block', 'debug', () => `${path}: close after a failed open: ${describeError(e)}`));
      throw err;
    }
  }

  /**
   * Whether small requests may go inline: while fast on tmpfs (they still go to the pool while
   * it backs off), or with RWF_NOWAIT on a disk (those the page cache cannot answer go to the pool).
   */
  get inlineIo(): boolean {
    return this.inline !== undefined && (!(this.inline instanceof NowaitIo) || this.inline.available);
  }

  async read(offset: number, length: number): Promise<Buffer> {
    const out = Buffer.allocUnsafe(length);
    await this.readInto(offset, out);
    return out;
  }

  async readInto(offset: number, out: Buffer): Promise<void> {
    this.check(offset, out.length, false);
    try {
      if (this.bounce) await this.bounce.read(this.fd, out, offset);
      else await readFully(this.io, this.fd, out, offset);
    } catch (err) {
      throw this.ioError('read', offset, out.length, err);
    }
  }

  async write(offset: number, data: Uint8Array, options?: WriteOptions): Promise<void> {
    this.check(offset, data.length, true);
    beforeChange(this.fileId, offset, data.length);
    try {
      // FUA goes through the O_DSYNC descriptor and never inline: it waits for the disk.
      const fua = options?.fua === true && !this.inMemory;
      const fd = fua ? await this.fuaFd() : this.fd;
      const io = fua ? this.fuaIo : this.io;
      if (this.bounce) await this.bounce.write(fd, data, offset);
      else await writeFully(io, fd, data, offset);
    } catch (err) {
      throw this.ioError('write', offset, data.length, err);
    }
  }

  async writev(offset: number, parts: readonly Uint8Array[], options?: WriteOptions): Promise<void> {
    // O_DIRECT goes through an aligned bounce buffer, which is a copy anyway.
    if (this.bounce) return this.write(offset, Buffer.concat(parts), options);
    let length = 0;
    for (const p of parts) length += p.length;
    this.check(offset, length, true);
    beforeChange(this.fileId, offset, length);
    try {
      const fua = options?.fua === true && !this.inMemory;
      const fd = fua ? await this.fuaFd() : this.fd;
      const io = fua ? this.fuaIo : this.io;
      await writevFully(io, fd, parts, offset);
    } catch (err) {
      throw this.ioError('write', offset, length, err);
    }
  }

  readNow(offset: number, out: Buffer): boolean {
    if (this.inline === undefined) return false;
    this.check(offset, out.length, false);
    try {
      // Short at the end of a file that shrank under us, or (RWF_NOWAIT) where the page cache
      // stops: finished here the same way, else left to the caller's other path, which reads
      // the whole range again.
      for (let n = 0; n < out.length;) {
        const more = this.inline.readNow(this.fd, out, n, out.length - n, offset + n);
        if (more === undefined) return false;
        if (more === 0) {
          // Past the end: what is not there reads as zeroes, as readFully does.
          out.fill(0, n);
          break;
        }
        n += more;
      }
    } catch (err) {
      throw this.ioError('read', offset, out.length, err);
    }
    return true;
  }

  writeNow(offset: number, parts: readonly Uint8Array[], options?: WriteOptions): boolean {
    // FUA waits for the disk (write()), except in memory, where a plain write is durable.
    if (this.inline === undefined || (options?.fua === true && !this.inMemory)) return false;
    const length = byteLength(parts);
    this.check(offset, length, true);
    beforeChange(this.fileId, offset, length);
    try {
      let done = this.inline.writevNow(this.fd, parts, offset);
      if (done === undefined) return false;
      // A short write (a nearly full file system, or RWF_NOWAIT where it would wait) is finished
      // the same way, or left to the caller's other path: it writes the same bytes again.
      if (done < length) {
        const all = Buffer.concat(parts);
        while (done < length) {
          const more = this.inline.writevNow(this.fd, [all.subarray(done)], offset + done);
          if (more === undefined) return false;
          done += progress(more, offset + done);
        }
      }
    } catch (err) {
      throw this.ioError('write', offset, length, err);
    }
    return true;
  }

  async flush(): Promise<void> {
    this.check(0, 0, false);
    if (this.inMemory) return;
    try {
      if (this.deadline) await this.deadline.sync(this.fd);
      else await fdatasync(this.fd);
    } catch (err) {
      throw this.ioError('flush', 0, 0, err);
    }
  }

  async discard(offset: number, length: number): Promise<void> {
    this.check(offset, length, true);
    // Contents after a discard are unspecified: small ones and thick files are left as they are.
    if (length < PUNCH_THRESHOLD || this.thick) return;
    beforeChange(this.fileId, offset, length);
    try {
      if (this.isBlockDevice) await discardBlockRange(this.path, offset, length);
      else await punchFileHole(this.path, offset, length);
    } catch (err) {
      throw this.ioError('discard', offset, length, err);
    }
  }

  async writeZeroes(offset: number, length: number, options?: ZeroOptions): Promise<void> {
    this.check(offset, length, true);
    // fallocate runs a process: worth it for large ranges of a regular file only. A thick file
    // keeps its blocks (zero range); a sparse one is punched unless the caller wants no hole.
    const byFallocate = !this.isBlockDevice && length >= PUNCH_THRESHOLD && (this.thick || !options?.noHole);
    if (options?.fast && !byFallocate) throw this.notFast(offset, length);
    if (byFallocate) {
      beforeChange(this.fileId, offset, length);
      try {
        if (this.thick) await zeroFileRange(this.path, offset, length);
        else await punchFileHole(this.path, offset, length);
        if (options?.fua) await fdatasync(this.fd);
        return;
      } catch (err) {
        // A filesystem without the operation (tmpfs has no zero range) gets the zeroes written.
        if ((err as NodeJS.ErrnoException).code !== 'EOPNOTSUPP') throw this.ioError('zero', offset, length, err);
        if (options?.fast) throw this.notFast(offset, length);
      }
    }
    for (let pos = offset; pos < offset + length; pos += ZERO_CHUNK.length) {
      const n = Math.min(ZERO_CHUNK.length, offset + length - pos);
      await this.write(pos, ZERO_CHUNK.subarray(0, n), options);
    }
  }

  async grow(size: number): Promise<void> {
    this.check(0, 0, true);
    if (!Number.isSafeInteger(size) || size < 0) throw new InvalidRequestError(`${this.path}: grow: invalid size ${size}`);
    try {
      const st = await fstat(this.fd);
      let now = this.isBlockDevice ? blockDeviceGeometry(st, this.blockSize).size : st.size;
      if (now < size && !this.isBlockDevice) {
        // A thick file stays thick: the new space is allocated now, so a full disk refuses the
        // grow instead of a write later.
        if (this.thick) await allocateFileRange(this.path, now, size - now);
        else await ftruncate(this.fd, size);
        now = size;
      }
      if (now < size) throw new NoSpaceError(`${this.path}: grow: expected at least ${size} bytes, the block device has ${now}`);
      this.size = Math.max(this.size, now);
    } catch (err) {
      throw this.ioError('grow', 0, size, err);
    }
  }

  async close(): Promise<void> {
    if (this.fd < 0) return;
    const fd = this.fd;
    this.fd = -1;
    const syncFd = this.syncFd;
    this.syncFd = undefined;
    await close(fd);
    if (syncFd) await close(await syncFd).catch((e: unknown) => trace('block', 'debug', () => `${this.path}: closing the O_DSYNC descriptor: ${describeError(e)}`));
  }

  /** FUA waits for the disk: never inline, but under the deadline where there is one. */
  private get fuaIo(): PositionalIo {
    return this.deadline ?? POOL_IO;
  }

  /**
   * Why the device can no longer be used although it has not failed a request yet: its file was
   * deleted (no name left: a restart would not find the member), or it stopped answering. md
   * asks this now and then and fails the member on an answer.
   */
  async health(): Promise<string | undefined> {
    if (this.fd < 0) return undefined;
    if (this.deadline?.hung !== undefined) return this.deadline.hung;
    // A file on a filesystem that may hang without bound is only asked about through its
    // deadline: a plain fstat could hold a pool thread for ever. (A local filesystem answers
    // fstat from the inode in memory.)
    if (this.unbounded) return undefined;
    try {
      const st = await fstat(this.fd);
      if (st.isFile() && st.nlink === 0) return `${this.path}: the member file was deleted while in use`;
    } catch (err) {
      return `${this.path}: fstat failed: ${(err as Error).message}`;
    }
    return undefined;
  }

  private fuaFd(): Promise<number> {
    this.syncFd ??= open(this.path, (this.flags & ~constants.O_CREAT) | constants.O_DSYNC);
    return this.syncFd;
  }

  private check(offset: number, length: number, writing: boolean): void {
    if (this.fd < 0) throw new ShutdownError(`${this.path}: device is closed`);
    if (writing && this.readOnly) throw new ReadOnlyError(`${this.path}: opened read-only`);
    checkRange(this.path, this.size, offset, length);
    if (this.bounce && (offset % this.blockSize !== 0 || length % this.blockSize !== 0)) {
      throw new InvalidRequestError(
        `${this.path}: O_DIRECT request [${offset}, +${length}) is not aligned to ${this.blockSize} bytes`,
      );
    }
  }

  private notFast(offset: number, length: number): NotSupportedError {
    const how = this.isBlockDevice
      ? 'a block device is zeroed by writing'
      : this.thick
        ? `a thick file is zeroed in place only from ${PUNCH_THRESHOLD} bytes, where its filesystem can`
        : `a sparse file is punched only from ${PUNCH_THRESHOLD} bytes, and only where holes are allowed`;
    return new NotSupportedError(`${this.path}: zeroing [${offset}, +${length}) would write the zeroes: ${how}`);
  }

  private ioError(op: string, offset: number, length: number, err: unknown): BlockError {
    if (err instanceof BlockError) return err;
    const code = (err as NodeJS.ErrnoException).code;
    const what = `${this.path}: ${op} [${offset}, +${length}) failed: ${(err as Error).message}`;
    if (code === 'ENOSPC' || code === 'EDQUOT') return new NoSpaceError(what, { cause: err });
    if (code === 'EBADF') return new ShutdownError(what);
    return new IoError(what, { cause: err });
  }
}

/**
 * How a file's requests are made (positional-io.ts): with a deadline where they may wait for a
 * device, inline with RWF_NOWAIT there once koffi has loaded (NowaitIo loads it at the first
 * fast-path request); inline while fast on tmpfs/ramfs; through the pool with `direct` (bounce
 * buffers) or without inline I/O.
 */
function positionalIo(path: string, st: Stats, options: FileDeviceOptions): PositionalIo {
  const inline = (options.inline ?? inlineByDefault) && !options.direct;
  if (options.direct || !(st.isFile() || st.isBlockDevice())) return POOL_IO;
  const unbounded = st.isFile() ? unboundedWaitFilesystem(path) : undefined;
  if (unbounded !== undefined) return new DeadlineIo(`${path} (on ${unbounded})`);
  if (st.isFile() && inMemoryFilesystem(path) !== undefined) return inline ? new InlineIo() : POOL_IO;
  // A disk: a request that waits longer than the deadline while the disk completes nothing
  // fails the member.
  const deadline = new DeadlineIo(path, undefined, blockDeviceProgress(st.isBlockDevice() ? st.rdev : st.dev));
  return inline ? new NowaitIo(loadNowait, deadline) : deadline;
}

/**
 * open(2) with O_NOATIME where allowed (the owner, or CAP_FOWNER): a read that updates the access
 * time dirties the inode, which on ext4 starts a journal handle, and that can wait for the disk
 * even when the data came from the page cache. Nobody reads a member's atime.
 */
async function openNoAtime(path: string, flags: number): Promise<number> {
  try {
    return await open(path, flags | constants.O_NOATIME, 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') throw err;
    return open(path, flags, 0o600);
  }
}

async function readFully(io: PositionalIo, fd: number, buf: Buffer, pos: number): Promise<void> {
  let done = 0;
  while (done < buf.length) {
    const n = await io.read(fd, buf, done, buf.length - done, pos + done);
    if (n === 0) {
      // Past the end of a file that shrank under us: what is not there reads as zeroes.
      buf.fill(0, done);
      return;
    }
    done += n;
  }
}

/**
 * A write that moved nothing and reported no error (a FUSE server that answers a failed write
 * with 0 bytes) would be retried for ever: it is an I/O error instead.
 */
function progress(n: number, pos: number): number {
  if (n <= 0) throw new Error(`write at byte ${pos} moved no bytes and reported no error`);
  return n;
}

async function writeFully(io: PositionalIo, fd: number, data: Uint8Array, pos: number): Promise<void> {
  let done = 0;
  while (done < data.length) {
    done += progress(await io.write(fd, data, done, data.length - done, pos + done), pos + done);
  }
}

async function writevFully(io: PositionalIo, fd: number, parts: readonly Uint8Array[], pos: number): Promise<void> {
  let rest = parts;
  for (;;) {
    let n = progress(await io.writev(fd, rest, pos), pos);
    pos += n;
    // A short write: drop the parts written whole, cut the one written in part.
    let i = 0;
    while (i < rest.length && n >= rest[i]!.length) n -= rest[i++]!.length;
    if (i === rest.length) return;
    rest = [rest[i]!.subarray(n), ...rest.slice(i + 1)];
  }
}

/**
 * What a file is, from its stat: equal exactly when two paths name one file, or one block device
 * (by its device number, so /dev/sdb and a /dev/disk/by-id link to it compare equal).
 */
export function fileIdOf(st: Stats): string {
  return st.isBlockDevice() ? `block ${st.rdev}` : `file ${st.dev}:${st.ino}`;
}

/** Size and logical block size of a block device, from sysfs (Node has no BLKGETSIZE64 ioctl). */
function blockDeviceGeometry(st: Stats, blockSizeOverride?: number): { size: number; blockSize: number } {
  const rdev = st.rdev;
  const major = Math.floor(rdev / 256) % 4096;
  const minor = (rdev % 256) + Math.floor(rdev / 1048576) * 256;
  const sys = `/sys/dev/block/${major}:${minor}`;
  const sectors = Number(readFileSync(`${sys}/size`, 'utf8').trim());
  let blockSize = blockSizeOverride ?? 512;
  if (blockSizeOverride === undefined) {
    for (const q of [`${sys}/queue/logical_block_size`, `${sys}/../queue/logical_block_size`]) {
      try {
        blockSize = Number(readFileSync(q, 'utf8').trim());
        break;
      } catch {
        // a partition has no queue/ of its own; its disk's is one level up
      }
    }
  }
  return { size: sectors * 512, blockSize };
}

function mapOpenError(path: string, err: unknown, direct: boolean): Error {
  const code = (err as NodeJS.ErrnoException).code;
  const msg = (err as Error).message;
  if (code === 'EINVAL' && direct) return new NotSupportedError(`${path}: the filesystem does not support O_DIRECT`);
  if (code === 'EROFS' || code === 'EACCES') return new ReadOnlyError(`${path}: cannot open for writing: ${msg}`);
  if (code === 'ENOENT') return new InvalidRequestError(`${path}: no such file`);
  return new IoError(`${path}: open failed: ${msg}`, { cause: err });
}
