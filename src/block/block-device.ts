// The BlockDevice interface: what every layer of llraid reads and writes through.
// A member file, an md array, and (later) a remote member over NBD are all BlockDevices,
// so the NBD server serves any of them and an array can be built from any of them.

import { InvalidRequestError, OutOfRangeError } from './errors.js';

/** The 512-byte sector: the unit of md's on-disk offsets and sizes, and of a torn write. */
export const SECTOR = 512;

export interface WriteOptions {
  /** Force Unit Access: the data is durable before the returned promise resolves. */
  fua?: boolean;
}

export interface ZeroOptions extends WriteOptions {
  /**
   * The range must read back as zeroes AND stay allocated (NBD_CMD_FLAG_NO_HOLE).
   * Without it a device may deallocate the range instead of writing zeroes.
   */
  noHole?: boolean;
  /**
   * Zero only if that costs less than writing the zeroes would (NBD_CMD_FLAG_FAST_ZERO):
   * otherwise reject at once with NotSupportedError (ENOTSUP), the range untouched. The device
   * decides per request (its size, noHole, the file underneath). Only for a device whose
   * capabilities say fastZero; no other device is asked.
   */
  fast?: boolean;
}

/**
 * What a device can do, declared once, in its `capabilities` (nbdkit's can_flush, can_fua,
 * can_trim, can_zero, can_fast_zero, can_multi_conn). The NBD server advertises exactly these
 * and refuses what it did not advertise. The optional operations declare themselves by being
 * there: extents (block status: without it every range is data), grow, health, readInto,
 * writev and the readNow/writeNow fast paths.
 */
export interface DeviceCapabilities {
  /** flush() makes the writes that resolved before it durable (NBD_FLAG_SEND_FLUSH). */
  readonly flush: boolean;
  /** write({ fua }) is durable when it resolves, natively or by a flush (NBD_FLAG_SEND_FUA). */
  readonly fua: boolean;
  /**
   * discard() may give the range's space back (NBD_FLAG_SEND_TRIM). False when a discard would
   * change nothing (a thick file keeps its blocks), so that clients need not send one.
   */
  readonly trim: boolean;
  /** writeZeroes() spares the caller sending zeroes (NBD_FLAG_SEND_WRITE_ZEROES). */
  readonly writeZeroes: boolean;
  /**
   * Some writeZeroes() calls cost less than writing the zeroes (a punched hole, a zeroed range,
   * dropped pages), and the device tells them apart: it honours ZeroOptions.fast
   * (NBD_FLAG_SEND_FAST_ZERO). proto.md: with NBD_CMD_FLAG_FAST_ZERO "the server MUST fail
   * quickly with NBD_ENOTSUP unless the request can be serviced in less time than a
   * corresponding NBD_CMD_WRITE, and SHOULD NOT alter the contents of the export".
   */
  readonly fastZero: boolean;
  /**
   * flush() covers every write that resolved before it, whoever made it, so several NBD
   * connections may share the device (NBD_FLAG_CAN_MULTI_CONN). True of any device one process
   * serves: every connection reaches the same object.
   */
  readonly multiConn: boolean;
}

/**
 * The capabilities of a device that declares none: what the BlockDevice contract promises of
 * every device, and no fast zeroing, which a device must know to be cheap.
 */
export const DEFAULT_CAPABILITIES: DeviceCapabilities = Object.freeze({
  flush: true,
  fua: true,
  trim: true,
  writeZeroes: true,
  fastZero: false,
  multiConn: true,
});

/** `device`'s capabilities: its own declaration, or DEFAULT_CAPABILITIES. */
export function capabilitiesOf(device: BlockDevice): DeviceCapabilities {
  return device.capabilities ?? DEFAULT_CAPABILITIES;
}

/** One run of a device's allocation map, as NBD `base:allocation` reports it. */
export interface Extent {
  length: number;
  /** Not allocated: reads may return anything the device promises (see `zero`). */
  hole: boolean;
  /** Known to read back as zeroes. */
  zero: boolean;
}

export interface BlockDevice {
  /** Size in bytes. Constant between grow() calls. */
  readonly size: number;
  /** Logical block size in bytes (512 or 4096): the smallest unit of atomic, aligned I/O. */
  readonly blockSize: number;
  readonly readOnly: boolean;
  /** What the device can do; DEFAULT_CAPABILITIES when absent (read it with capabilitiesOf). */
  readonly capabilities?: DeviceCapabilities;

  /** Reads `length` bytes at `offset`. Resolves with exactly `length` bytes or rejects. */
  read(offset: number, length: number): Promise<Buffer>;
  /**
   * Reads `out.length` bytes at `offset` into `out`. Optional: for callers that reuse their
   * buffers (the sync thread), where a fresh buffer per read costs its page faults. Use the
   * readInto() function below, which falls back to read().
   */
  readInto?(offset: number, out: Buffer): Promise<void>;
  /**
   * Writes all of `data` at `offset`. Resolves once written (durable too when `fua`). The caller
   * may reuse `data` once the promise resolved: a device that needs the bytes later copies them.
   * After a rejection the device may still be reading `data` (a request past its deadline cannot
   * be taken back, deadline-io.ts), so a caller that reuses it then accepts that the range holds
   * whatever the buffer holds later: md does (the member is failed and resynced before it is read
   * again); the NBD server drops the buffer instead.
   */
  write(offset: number, data: Uint8Array, options?: WriteOptions): Promise<void>;
  /**
   * Writes `parts` back to back at `offset`, as write() of their concatenation would. Optional:
   * for callers whose data arrived in pieces (an NBD payload spread over socket reads), so a
   * device that can gather (pwritev) saves the copy. Use the writeParts() function below, which
   * falls back to write().
   */
  writev?(offset: number, parts: readonly Uint8Array[], options?: WriteOptions): Promise<void>;
  /**
   * Optional synchronous fast paths, for a caller whose per-request overhead matters (the NBD
   * server at 4 KiB). Each either does the whole request before returning, and returns true, or
   * does nothing and returns false, and the caller uses the asynchronous method. They say true
   * only while the device answers from memory (a file in the page cache), so a caller never
   * blocks on a disk. Errors throw, as the asynchronous methods reject. A completed writeNow
   * counts as a resolved write for flush(). Neither keeps `out`, `parts` or the array after it
   * returns (a caller may reuse them at once: the NBD server passes one array for every WRITE).
   * A writeNow with FUA says true only when the bytes are durable as it returns (a file on tmpfs,
   * whose page cache is its storage); a device that would have to wait for that declines.
   */
  readNow?(offset: number, out: Buffer): boolean;
  writeNow?(offset: number, parts: readonly Uint8Array[], options?: WriteOptions): boolean;
  /** Makes every write that resolved before this call durable. */
  flush(): Promise<void>;
  /** Tells the device the range is unused: its contents are unspecified afterwards. */
  discard(offset: number, length: number): Promise<void>;
  /** The range reads back as zeroes afterwards. */
  writeZeroes(offset: number, length: number, options?: ZeroOptions): Promise<void>;
  /** The allocation map of [offset, offset+length): extents that together cover the range. */
  extents?(offset: number, length: number): Promise<Extent[]>;
  /**
   * Makes the device at least `size` bytes long: a regular file is extended (sparse, reading as
   * zeroes), a block device's size is read again (it grows under us). `size` then reports the
   * new length. Rejects with ENOSPC when the device cannot reach `size`; never shrinks.
   */
  grow?(size: number): Promise<void>;
  /**
   * Why the device can no longer be used though no request has failed yet (its file was deleted,
   * it stopped answering), or undefined while it is fine. Optional; md asks members now and then.
   * A device that another engine took (a higher attach epoch) rejects with its FencedError
   * instead, as its requests do: md fences the array then, rather than failing the member and
   * going on degraded without it.
   */
  health?(): Promise<string | undefined>;
  /** Releases the device. Further calls reject with ESHUTDOWN. */
  close(): Promise<void>;
}

/**
 * Checks that [offset, offset+length) is a valid request on a device of `size` bytes.
 * Every device calls this first, so no layer writes outside its bounds. The error names
 * `what` and, when given, `op` (kept apart so that a hot caller passes two fixed strings
 * instead of making one per request).
 */
export function checkRange(what: string, size: number, offset: number, length: number, op?: string): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
    throw new InvalidRequestError(`${what}${op === undefined ? '' : `: ${op}`}: invalid request offset=${offset} length=${length}`);
  }
  if (offset + length > size) {
    throw new OutOfRangeError(
      `${what}${op === undefined ? '' : `: ${op}`}: request [${offset}, ${offset + length}) reaches past the end of the device (${size} bytes)`,
    );
  }
}

/** Reads `out.length` bytes at `offset` of `device` into `out`, natively where it can. */
export async function readInto(device: BlockDevice, offset: number, out: Buffer): Promise<void> {
  if (device.readInto) return device.readInto(offset, out);
  (await device.read(offset, out.length)).copy(out);
}

/** Writes `parts` back to back at `offset`: gathered when the device can, else copied into one. */
export function writeParts(dev: BlockDevice, offset: number, parts: readonly Uint8Array[], options?: WriteOptions): Promise<void> {
  if (parts.length === 1) return dev.write(offset, parts[0]!, options);
  if (dev.writev) return dev.writev(offset, parts, options);
  return dev.write(offset, Buffer.concat(parts), options);
}
