// An export: a BlockDevice under a name, with the sizes and transmission flags the server
// advertises for it. The handshake picks one from the server's ExportSource: a fixed table
// (ExportTable), or an owner that opens exports when a client attaches and may refuse it (the
// member service); the connection serves requests against it.

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
  /**
   * Bytes the device holds while a write is in flight, per byte written, its data included
   * (default 1): a connection counts its WRITEs at this weight against its in-flight budget, so
   * that a device holding blocks of its own for a write (raid5/6's parity and member reads) is
   * held to the same memory as one that holds only the data.
   */
  writeWeight?: number;
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
  readonly writeWeight: number;

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
    this.writeWeight = options.writeWeight ?? 1;
    if (!(this.writeWeight >= 1 && this.writeWeight <= 16)) {
      throw new NbdError('NBD_EXPORT', `export ${JSON.stringify(this.name)}: write weight must be between 1 and 16, found ${this.writeWeight}`);
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

/** A refusal of an export by its source, sent as the option's error reply. */
export interface ExportRefusal {
  /** 'unknown': NBD_REP_ERR_UNKNOWN (no such export); 'policy': NBD_REP_ERR_POLICY. */
  refused: 'unknown' | 'policy';
  message: string;
}

/** An export a source handed out, and what to call once the connection is done with it. */
export interface Attachment {
  export: NbdExport;
  /** Called once: when the connection ends (OPT_GO), or right after the reply (OPT_INFO). */
  release?: () => void | Promise<void>;
}

/** A client connection as an export's owner sees it: to name in logs, and to fence. */
export interface ServedConnection {
  /** Numbers connections in this process (trace lines say `connection N`). */
  readonly id: number;
  /** The peer: `HOST:PORT`, with the certificate's subject CN over TLS; `unix` on a unix socket. */
  readonly peer: string;
  /**
   * Stops the connection for good: no device call starts from now on, the started ones settle,
   * every outstanding request is answered ESHUTDOWN with `message` (prefixed `fenced: `), and the
   * socket is closed. Resolves once no device call of this connection runs.
   */
  fence(message: string): Promise<void>;
}

/** What a client asks for at NBD_OPT_GO (or NBD_OPT_EXPORT_NAME, with no contexts). */
export interface AttachRequest {
  name: string;
  /** Names of the meta contexts the client selected for this export (NBD_OPT_SET_META_CONTEXT). */
  contexts: readonly string[];
  /** Structured replies were negotiated. */
  structured: boolean;
  connection: ServedConnection;
}

/**
 * Where a server's exports come from. Every option that names an export asks it, so a source
 * may change what it serves while the server runs. `attach` may refuse (with a message the
 * client sees) and may wait: the GO reply is sent only once it resolves.
 */
export interface ExportSource {
  /** The largest payload of any export this source hands out (the server's limits are checked against it). */
  readonly maxPayload: number;
  /** NBD_OPT_LIST: names and descriptions. */
  list(): Promise<Array<{ name: string; description: string }>>;
  /** Whether `name` is an export (meta context options about others get NBD_REP_ERR_UNKNOWN). */
  has(name: string): Promise<boolean>;
  /**
   * Whether `query` names a meta context of export `name` this source serves, beyond
   * `base:allocation` (which the server answers itself). Such contexts carry no block status:
   * BLOCK_STATUS answers them with one descriptor of flags 0 over the whole range.
   */
  acceptsMetaContext?(name: string, query: string): boolean;
  /** NBD_OPT_INFO: a look at the export, released right after the reply. */
  inspect(name: string): Promise<Attachment | ExportRefusal>;
  /** NBD_OPT_GO and NBD_OPT_EXPORT_NAME: the export this connection will serve. */
  attach(request: AttachRequest): Promise<Attachment | ExportRefusal>;
}

export function isRefusal(a: Attachment | ExportRefusal): a is ExportRefusal {
  return 'refused' in a;
}

/** The exports of one server, fixed when it is made, looked up by name. */
export class ExportTable implements ExportSource {
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

  all(): NbdExport[] {
    return [...this.byName.values()];
  }

  get maxPayload(): number {
    return Math.max(...this.all().map((e) => e.maxPayload));
  }

  list(): Promise<Array<{ name: string; description: string }>> {
    return Promise.resolve(this.all().map((e) => ({ name: e.name, description: e.description })));
  }

  has(name: string): Promise<boolean> {
    return Promise.resolve(this.find(name) !== undefined);
  }

  inspect(name: string): Promise<Attachment | ExportRefusal> {
    const e = this.find(name);
    return Promise.resolve(e ? { export: e } : { refused: 'unknown', message: `no export named ${JSON.stringify(name)}` });
  }

  attach(request: AttachRequest): Promise<Attachment | ExportRefusal> {
    return this.inspect(request.name);
  }
}
