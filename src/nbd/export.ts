// An export: a BlockDevice under a name, with the sizes and transmission flags the server
// advertises for it. The handshake picks one; the connection serves requests against it.

import { capabilitiesOf, type BlockDevice, type DeviceCapabilities } from '../block/block-device.js';
import { NbdError } from './errors.js';
import {
  DEFAULT_MAX_PAYLOAD,
  MAX_STRING,
  TFLAG_CAN_MULTI_CONN,
  TFLAG_HAS_FLAGS,
  TFLAG_READ_ONLY,
  TFLAG_SEND_CACHE,
  TFLAG_SEND_DF,
  TFLAG_SEND_FAST_ZERO,
  TFLAG_SEND_FLUSH,
  TFLAG_SEND_FUA,
  TFLAG_SEND_TRIM,
  TFLAG_SEND_WRITE_ZEROES,
} from './protocol.js';

export interface ExportOptions {
  /** The name clients select; "" is also accepted for the first export. */
  name: string;
  device: BlockDevice;
  description?: string;
  /** Refuse writes even if the device accepts them. */
  readOnly?: boolean;
  /** Largest READ/WRITE payload accepted (default 32 MiB). */
  maxPayload?: number;
}

export class NbdExport {
  readonly name: string;
  readonly description: string;
  readonly device: BlockDevice;
  readonly readOnly: boolean;
  /** The device's, read once: what the handshake advertises and the connection accepts. */
  readonly capabilities: DeviceCapabilities;
  /**
   * The transmission flags of every connection but NBD_FLAG_SEND_DF (structured replies only):
   * what the device can do and this export allows. A request for anything not here is refused.
   */
  readonly flags: number;
  /** Alignment of every offset and length: the device's logical block size. */
  readonly minBlock: number;
  readonly preferredBlock: number;
  readonly maxPayload: number;

  constructor(options: ExportOptions) {
    if (Buffer.byteLength(options.name) > MAX_STRING) {
      throw new NbdError('NBD_EXPORT', `export name must be at most ${MAX_STRING} bytes, found ${Buffer.byteLength(options.name)}`);
    }
    this.name = options.name;
    this.description = options.description ?? '';
    this.device = options.device;
    this.readOnly = (options.readOnly ?? false) || options.device.readOnly;
    this.capabilities = capabilitiesOf(options.device);
    this.flags = exportFlags(this.capabilities, this.readOnly);
    this.minBlock = options.device.blockSize;
    this.preferredBlock = Math.max(4096, this.minBlock);
    this.maxPayload = options.maxPayload ?? DEFAULT_MAX_PAYLOAD;
    if (this.maxPayload < this.preferredBlock || this.maxPayload % this.minBlock !== 0) {
      throw new NbdError('NBD_EXPORT', `export ${JSON.stringify(this.name)}: max payload ${this.maxPayload} must be a multiple of ${this.minBlock} and at least ${this.preferredBlock}`);
    }
  }

  get size(): number {
    return this.device.size;
  }

  /** The 16-bit transmission flags; DF only means something once structured replies are on. */
  transmissionFlags(structured: boolean): number {
    return structured ? this.flags | TFLAG_SEND_DF : this.flags;
  }

  /** Whether every flag of `flags` is advertised. */
  offers(flags: number): boolean {
    return (this.flags & flags) === flags;
  }
}

/**
 * The flags a device with `caps` is served with. CACHE is always offered: the server answers it
 * itself (there is no cache of its own to fill). A read-only export offers no write commands.
 */
function exportFlags(caps: DeviceCapabilities, readOnly: boolean): number {
  let flags = TFLAG_HAS_FLAGS | TFLAG_SEND_CACHE;
  if (caps.flush) flags |= TFLAG_SEND_FLUSH;
  if (caps.fua) flags |= TFLAG_SEND_FUA;
  if (caps.multiConn) flags |= TFLAG_CAN_MULTI_CONN;
  if (readOnly) return flags | TFLAG_READ_ONLY;
  if (caps.trim) flags |= TFLAG_SEND_TRIM;
  // proto.md, NBD_FLAG_SEND_FAST_ZERO: the server "MUST set this transmission flag to 0 if
  // NBD_FLAG_SEND_WRITE_ZEROES is not set".
  if (caps.writeZeroes) flags |= TFLAG_SEND_WRITE_ZEROES | (caps.fastZero ? TFLAG_SEND_FAST_ZERO : 0);
  return flags;
}

/** The exports of one server, looked up by name. */
export class ExportTable {
  private readonly byName = new Map<string, NbdExport>();

  constructor(exports: readonly NbdExport[]) {
    for (const e of exports) {
      if (this.byName.has(e.name)) throw new NbdError('NBD_EXPORT', `export name ${JSON.stringify(e.name)} is used twice`);
      this.byName.set(e.name, e);
    }
  }

  /** The export called `name`; the empty name selects the first export (proto.md "default export"). */
  find(name: string): NbdExport | undefined {
    return this.byName.get(name) ?? (name === '' ? this.byName.values().next().value : undefined);
  }

  list(): NbdExport[] {
    return [...this.byName.values()];
  }
}
