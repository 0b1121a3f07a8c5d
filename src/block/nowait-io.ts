// Reads and writes that refuse to wait: preadv2/pwritev2 with RWF_NOWAIT. The kernel answers
// such a call from the page cache or not at all: where it would have to wait (the data is not
// cached, a page is locked for I/O, dirty-page throttling, a journal to start, a timestamp to
// log) it fails with EAGAIN at once. That is what makes a synchronous call on the event loop
// safe on a disk that may hang. Node does not expose the flags, so koffi (an FFI library with
// prebuilt binaries, also used for prctl in engine/io-flusher.ts) calls libc.
//
// RWF_NOWAIT does not mean "no I/O" for a read: where the data is not cached, the kernel still
// starts readahead before it answers EAGAIN, and submitting it can wait (for a tag of a device
// whose queue is full of stuck requests, or for the filesystem's extent blocks). So a read asks
// cachestat(2) (Linux 6.5) first and goes inline only when every page it spans is cached; only a
// page evicted between the two calls can still start readahead. Without cachestat (ENOSYS) reads
// are UNSUPPORTED.
//
// Filesystems decide whether they take the flag (FMODE_NOWAIT, and for buffered writes their
// own support): on Linux 6.18, ext4 and xfs take it for reads, xfs for buffered writes (EAGAIN
// when the write would allocate), ext4 refuses buffered writes and tmpfs refuses both, with
// EOPNOTSUPP. A refusal is reported as UNSUPPORTED and the caller stops asking.
//
// The iovec array is built by hand in a BigUint64Array from koffi.address() of the caller's
// buffer: marshalling a JS object into a struct costs about a microsecond more per call. The
// address is used at once, in the same synchronous call, and a Node Buffer's memory never moves.

import { constants } from 'node:os';
import { loadLibc, type Libc } from './libc.js';

/** RWF_NOWAIT (include/uapi/linux/fs.h). */
const RWF_NOWAIT = 0x08;
/** The call would have waited: make the request some other way. */
export const WOULD_BLOCK = -1;
/** The file's filesystem does not take RWF_NOWAIT for this operation. */
export const UNSUPPORTED = -2;
/** cachestat's number: 451 on every architecture (new syscalls share one table since 5.1). */
const SYS_CACHESTAT = 451;
/** iovecs in one writev (a member write is a header and a payload or a few parts). */
const MAX_PARTS = 16;

/** preadv2/pwritev2 with RWF_NOWAIT: bytes moved, WOULD_BLOCK or UNSUPPORTED; other errors throw, as fs does. */
export interface NowaitCalls {
  read(fd: number, buf: Uint8Array, off: number, len: number, pos: number): number;
  writev(fd: number, parts: readonly Uint8Array[], pos: number): number;
}

const errnoNames = new Map<number, string>(Object.entries(constants.errno).map(([name, n]) => [n, name]));

/** An Error as fs's synchronous calls throw them (code, errno, syscall), for FileDevice.ioError. */
function errnoError(errno: number, syscall: string): NodeJS.ErrnoException {
  const code = errnoNames.get(errno) ?? `errno ${errno}`;
  const err: NodeJS.ErrnoException = new Error(`${code}: ${syscall} failed`);
  err.code = code;
  err.errno = -errno;
  err.syscall = syscall;
  return err;
}

function bind({ koffi, libc }: Libc): NowaitCalls {
  // ssize_t is intptr_t on Linux; the iovec array goes as a plain pointer (built below).
  const preadv2 = libc.func('intptr_t preadv2(int, void *, int, int64_t, int)') as (fd: number, iov: BigUint64Array, n: number, pos: number, flags: number) => number;
  const pwritev2 = libc.func('intptr_t pwritev2(int, void *, int, int64_t, int)') as (fd: number, iov: BigUint64Array, n: number, pos: number, flags: number) => number;
  // cachestat through syscall(2) (glibc has no wrapper); declared with fixed arguments, which
  // the integer calling conventions of x86-64 and arm64 Linux pass as they pass variadic ones.
  const cachestat = libc.func('long syscall(long, int, void *, void *, unsigned int)') as (nr: number, fd: number, range: Uint32Array, stat: Uint32Array, flags: number) => number;
  const pageSize = (libc.func('int getpagesize(void)') as () => number)();
  // One iovec array, cachestat range and result for every call: calls are synchronous and never nest.
  const iov = new BigUint64Array(2 * MAX_PARTS);
  /** iov's 32-bit halves: lengths (below 4 GiB) go in as numbers. */
  const iov32 = new Uint32Array(iov.buffer);
  // Written and read as 32-bit halves (little-endian hosts: x86-64, arm64): converting numbers
  // to BigInt and back costs more than the syscall.
  const range = new Uint32Array(4);
  const stat = new Uint32Array(10);
  /** Whether every page of [pos, pos + len) is in the page cache (undefined: cachestat is refused). */
  const cached = (fd: number, pos: number, len: number): boolean | undefined => {
    range[0] = pos % 0x1_0000_0000;
    range[1] = Math.floor(pos / 0x1_0000_0000);
    range[2] = len;
    if (cachestat(SYS_CACHESTAT, fd, range, stat, 0) < 0) {
      const errno = koffi.errno();
      if (errno === constants.errno.ENOSYS || errno === constants.errno.EPERM) return undefined;
      throw errnoError(errno, 'cachestat');
    }
    const pages = Math.floor((pos + len - 1) / pageSize) - Math.floor(pos / pageSize) + 1;
    // nr_cache, a page count: its high half is 0 below 16 TiB of cache.
    return stat[1] !== 0 || stat[0]! >= pages;
  };
  const outcome = (n: number, syscall: string): number => {
    if (n >= 0) return n;
    const errno = koffi.errno();
    if (errno === constants.errno.EAGAIN) return WOULD_BLOCK;
    if (errno === constants.errno.EOPNOTSUPP) return UNSUPPORTED;
    throw errnoError(errno, syscall);
  };
  return {
    read(fd, buf, off, len, pos) {
      if (len === 0) return 0;
      const all = cached(fd, pos, len);
      if (all === undefined) return UNSUPPORTED;
      if (!all) return WOULD_BLOCK;
      iov[0] = off === 0 ? koffi.address(buf) : koffi.address(buf) + BigInt(off);
      iov32[2] = len;
      iov32[3] = 0;
      return outcome(preadv2(fd, iov, 1, pos, RWF_NOWAIT), 'preadv2');
    },
    writev(fd, parts, pos) {
      // More parts than fit: the caller's other path takes it.
      if (parts.length > MAX_PARTS) return WOULD_BLOCK;
      for (let i = 0; i < parts.length; i++) {
        const p = parts[i]!;
        iov[2 * i] = koffi.address(p);
        iov32[4 * i + 2] = p.length;
        iov32[4 * i + 3] = 0;
      }
      return outcome(pwritev2(fd, iov, parts.length, pos, RWF_NOWAIT), 'pwritev2');
    },
  };
}

let loading: Promise<NowaitCalls | undefined> | undefined;

/**
 * The RWF_NOWAIT calls, or undefined when koffi or libc cannot be loaded (said once, as a
 * process warning: members on disks then make every request through the pool).
 */
export function loadNowait(): Promise<NowaitCalls | undefined> {
  loading ??= (async () => {
    try {
      return bind(await loadLibc());
    } catch (err) {
      process.emitWarning(`cannot load koffi for preadv2(RWF_NOWAIT) (${(err as Error).message}): member files on disk filesystems get no inline fast path; every request goes through the thread pool, under the member deadline`, { code: 'LLRAID_NO_NOWAIT_IO' });
      return undefined;
    }
  })();
  return loading;
}
