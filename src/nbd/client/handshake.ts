// The client side of the fixed newstyle handshake (proto.md, "Option haggling"):
//   greeting ─► client flags ─► [STARTTLS ─► TLS] ─► STRUCTURED_REPLY ─► SET_META_CONTEXT ─► GO
// STARTTLS only for an `nbds` URI, and a server that refuses it ends the attach (never plain).
// SET_META_CONTEXT asks for `llraid:epoch=<n>` alone when an epoch is given (issue 13 plan, 3),
// else for `base:allocation`. GO asks for NBD_INFO_EXPORT and NBD_INFO_BLOCK_SIZE; a server that
// does not know GO (NBD_REP_ERR_UNSUP) gets NBD_OPT_EXPORT_NAME, as proto.md allows.
// Every refusal becomes a typed error naming the URI and carrying the server's message.

import { FencedError } from '../../block/errors.js';
import { NbdError } from '../errors.js';
import {
  BASE_ALLOCATION,
  CLIENT_FIXED_NEWSTYLE,
  CLIENT_NO_ZEROES,
  FLAG_FIXED_NEWSTYLE,
  FLAG_NO_ZEROES,
  GREETING_SIZE,
  IHAVEOPT,
  INFO_BLOCK_SIZE,
  INFO_EXPORT,
  MAX_STRING,
  NBD_MAGIC,
  OPTION_HEADER_SIZE,
  OPTION_REPLY_HEADER_SIZE,
  OPTION_REPLY_MAGIC,
  OPT_EXPORT_NAME,
  OPT_GO,
  OPT_SET_META_CONTEXT,
  OPT_STARTTLS,
  OPT_STRUCTURED_REPLY,
  REP_ACK,
  REP_ERR_BLOCK_SIZE_REQD,
  REP_ERR_INVALID,
  REP_ERR_PLATFORM,
  REP_ERR_POLICY,
  REP_ERR_SHUTDOWN,
  REP_ERR_TLS_REQD,
  REP_ERR_TOO_BIG,
  REP_ERR_UNKNOWN,
  REP_ERR_UNSUP,
  REP_INFO,
  REP_META_CONTEXT,
  isOptionError,
} from '../protocol.js';
import type { NbdTarget } from './uri.js';

/** The meta context an llraid member service answers with the epoch it accepted. */
export const EPOCH_CONTEXT_PREFIX = 'llraid:epoch=';
/** Option replies longer than this are not from an honest server (the longest is a message). */
const MAX_OPTION_REPLY = 64 * 1024;
/** The oldstyle negotiation's second magic, where fixed newstyle has IHAVEOPT. */
const OLDSTYLE_MAGIC = 0x00420281861253n;

export interface HandshakeIo {
  /** Exactly `n` bytes; rejects when the server goes away. */
  read(n: number): Promise<Buffer>;
  write(data: Buffer): void;
  /** Runs TLS over the connection; reads and writes go through it afterwards. */
  startTls(): Promise<void>;
}

/** What the handshake settled: the export and how the transmission phase speaks. */
export interface AttachedExport {
  size: number;
  /** Transmission flags (NBD_FLAG_*). */
  flags: number;
  /** From NBD_INFO_BLOCK_SIZE, when the server sent it. */
  blockSizes: { minimum: number; preferred: number; maximum: number } | undefined;
  structured: boolean;
  /** The context id of `base:allocation`, when the server selected it. */
  allocationContext: number | undefined;
}

export async function negotiate(io: HandshakeIo, target: NbdTarget, epoch: bigint | undefined, tls: boolean): Promise<AttachedExport> {
  const greeting = await io.read(GREETING_SIZE);
  const magic = greeting.readBigUInt64BE(0);
  if (magic !== NBD_MAGIC) throw protocol(target, `expected the greeting magic NBDMAGIC, found 0x${magic.toString(16)}`);
  const second = greeting.readBigUInt64BE(8);
  if (second === OLDSTYLE_MAGIC) throw protocol(target, 'the server speaks the oldstyle negotiation, which this client does not');
  if (second !== IHAVEOPT) throw protocol(target, `expected IHAVEOPT after the greeting magic, found 0x${second.toString(16)}`);
  const serverFlags = greeting.readUInt16BE(16);
  if ((serverFlags & FLAG_FIXED_NEWSTYLE) === 0) throw protocol(target, 'the server does not speak fixed newstyle negotiation');
  const noZeroes = (serverFlags & FLAG_NO_ZEROES) !== 0;
  const clientFlags = Buffer.alloc(4);
  clientFlags.writeUInt32BE(CLIENT_FIXED_NEWSTYLE | (noZeroes ? CLIENT_NO_ZEROES : 0));
  io.write(clientFlags);

  const options = new OptionChannel(io, target);
  if (tls) {
    const r = await options.ask(OPT_STARTTLS);
    if (r.type !== REP_ACK) {
      throw new NbdError('NBD_TLS', `${target.uri}: the server refused TLS (${replyName(r.type)}${r.message ? `: ${r.message}` : ''}); not going on in plain`);
    }
    await io.startTls();
  }

  const sr = await options.ask(OPT_STRUCTURED_REPLY);
  if (sr.type === REP_ERR_TLS_REQD) throw tlsRequired(target, sr.message);
  const structured = sr.type === REP_ACK;
  if (!structured && epoch !== undefined) throw notMember(target, `it does not offer structured replies (${replyName(sr.type)})`);

  let allocationContext: number | undefined;
  if (structured) {
    const query = epoch === undefined ? BASE_ALLOCATION : `${EPOCH_CONTEXT_PREFIX}${epoch}`;
    const contexts = await options.setMetaContext(target.exportName, query);
    if (epoch !== undefined) {
      const e = contexts.error;
      if (e !== undefined) {
        // A wrong export, TLS or fencing say so; any other refusal is a server without epochs.
        if (e.type === REP_ERR_UNKNOWN || e.type === REP_ERR_TLS_REQD || isFenced(e)) refusal(target, 'NBD_OPT_SET_META_CONTEXT', e);
        throw notMember(target, `it refused the meta context ${query} (${replyName(e.type)}${e.message ? `: ${e.message}` : ''})`);
      }
      if (!contexts.selected.some((c) => c.name === query)) throw notMember(target, 'it did not accept the attach epoch');
    } else {
      allocationContext = contexts.selected.find((c) => c.name === BASE_ALLOCATION)?.id;
    }
  }

  const go = await options.go(target.exportName);
  if (go !== 'unsupported') return { ...go, structured, allocationContext };
  if (epoch !== undefined) throw notMember(target, 'it does not know NBD_OPT_GO');
  // proto.md: a client that gets NBD_REP_ERR_UNSUP for GO may fall back to EXPORT_NAME, whose
  // only refusal is a closed connection.
  const name = Buffer.from(target.exportName, 'utf8');
  io.write(optionRequest(OPT_EXPORT_NAME, name));
  let reply: Buffer;
  try {
    reply = await io.read(noZeroes ? 10 : 134);
  } catch (err) {
    if (err instanceof NbdError && err.code === 'NBD_CLOSED') {
      throw new NbdError('NBD_NO_EXPORT', `${target.uri}: the server closed the connection when asked for the export ${JSON.stringify(target.exportName)} (it has no such export)`);
    }
    throw err;
  }
  return {
    size: readSize(target, reply, 0),
    flags: reply.readUInt16BE(8),
    blockSizes: undefined,
    structured: false,
    allocationContext: undefined,
  };
}

interface OptionReply {
  option: number;
  type: number;
  data: Buffer;
  /** The data as text, for error replies (proto.md: "an optional human-readable message"). */
  message: string;
}

/** Sends options and reads their replies, checking that each reply answers the option asked. */
class OptionChannel {
  constructor(
    private readonly io: HandshakeIo,
    private readonly target: NbdTarget,
  ) {}

  /** Sends an option without data and reads its single reply. */
  async ask(option: number): Promise<OptionReply> {
    this.io.write(optionRequest(option, Buffer.alloc(0)));
    return this.reply(option);
  }

  async setMetaContext(exportName: string, query: string): Promise<{ selected: Array<{ id: number; name: string }>; error: OptionReply | undefined }> {
    const q = Buffer.from(query, 'utf8');
    const name = exportNameBytes(this.target, exportName);
    const data = Buffer.alloc(4 + name.length + 4 + 4 + q.length);
    data.writeUInt32BE(name.length, 0);
    name.copy(data, 4);
    data.writeUInt32BE(1, 4 + name.length);
    data.writeUInt32BE(q.length, 8 + name.length);
    q.copy(data, 12 + name.length);
    this.io.write(optionRequest(OPT_SET_META_CONTEXT, data));
    const selected: Array<{ id: number; name: string }> = [];
    for (;;) {
      const r = await this.reply(OPT_SET_META_CONTEXT);
      if (r.type === REP_ACK) return { selected, error: undefined };
      if (isOptionError(r.type)) return { selected: [], error: r };
      if (r.type !== REP_META_CONTEXT || r.data.length < 4) throw protocol(this.target, `unexpected reply ${replyName(r.type)} (${r.data.length} bytes) to NBD_OPT_SET_META_CONTEXT`);
      selected.push({ id: r.data.readUInt32BE(0), name: r.data.toString('utf8', 4) });
    }
  }

  /** NBD_OPT_GO with INFO_EXPORT and INFO_BLOCK_SIZE; 'unsupported' when the server does not know GO. */
  async go(exportName: string): Promise<Omit<AttachedExport, 'structured' | 'allocationContext'> | 'unsupported'> {
    const name = exportNameBytes(this.target, exportName);
    const data = Buffer.alloc(4 + name.length + 2 + 4);
    data.writeUInt32BE(name.length, 0);
    name.copy(data, 4);
    data.writeUInt16BE(2, 4 + name.length);
    data.writeUInt16BE(INFO_EXPORT, 6 + name.length);
    data.writeUInt16BE(INFO_BLOCK_SIZE, 8 + name.length);
    this.io.write(optionRequest(OPT_GO, data));
    let size: number | undefined;
    let flags = 0;
    let blockSizes: AttachedExport['blockSizes'];
    for (;;) {
      const r = await this.reply(OPT_GO);
      if (r.type === REP_ERR_UNSUP) return 'unsupported';
      if (isOptionError(r.type)) refusal(this.target, 'NBD_OPT_GO', r);
      if (r.type === REP_ACK) {
        if (size === undefined) throw protocol(this.target, 'the server acknowledged NBD_OPT_GO without sending NBD_INFO_EXPORT');
        return { size, flags, blockSizes };
      }
      if (r.type !== REP_INFO || r.data.length < 2) throw protocol(this.target, `unexpected reply ${replyName(r.type)} (${r.data.length} bytes) to NBD_OPT_GO`);
      const info = r.data.readUInt16BE(0);
      if (info === INFO_EXPORT) {
        if (r.data.length !== 12) throw protocol(this.target, `NBD_INFO_EXPORT of ${r.data.length} bytes, expected 12`);
        size = readSize(this.target, r.data, 2);
        flags = r.data.readUInt16BE(10);
      } else if (info === INFO_BLOCK_SIZE) {
        if (r.data.length !== 14) throw protocol(this.target, `NBD_INFO_BLOCK_SIZE of ${r.data.length} bytes, expected 14`);
        const minimum = r.data.readUInt32BE(2);
        const preferred = r.data.readUInt32BE(6);
        const maximum = r.data.readUInt32BE(10);
        if (!isPowerOfTwo(minimum) || minimum > 64 * 1024 || !isPowerOfTwo(preferred) || preferred < minimum || maximum < minimum) {
          throw protocol(this.target, `NBD_INFO_BLOCK_SIZE minimum ${minimum}, preferred ${preferred}, maximum ${maximum} breaks proto.md's rules`);
        }
        blockSizes = { minimum, preferred, maximum };
      }
      // Other information (a name, a description) is not asked for and not needed.
    }
  }

  private async reply(option: number): Promise<OptionReply> {
    const h = await this.io.read(OPTION_REPLY_HEADER_SIZE);
    const magic = h.readBigUInt64BE(0);
    if (magic !== OPTION_REPLY_MAGIC) throw protocol(this.target, `expected the option reply magic, found 0x${magic.toString(16)}`);
    const answered = h.readUInt32BE(8);
    const type = h.readUInt32BE(12);
    const length = h.readUInt32BE(16);
    if (answered !== option) throw protocol(this.target, `asked option ${option}, the server answered option ${answered}`);
    if (length > MAX_OPTION_REPLY) throw protocol(this.target, `an option reply of ${length} bytes, more than the ${MAX_OPTION_REPLY} this client reads`);
    const data = length === 0 ? Buffer.alloc(0) : await this.io.read(length);
    return { option, type, data, message: isOptionError(type) ? data.toString('utf8') : '' };
  }
}

/** Throws the typed error of an option the server refused (NBD_REP_ERR_*). */
function refusal(target: NbdTarget, what: string, r: OptionReply): never {
  const said = r.message ? `: ${r.message}` : '';
  // Issue 13 plan, 3: a member service refuses an epoch lower than the member's with `fenced: ...`.
  if (isFenced(r)) throw new FencedError(`${target.uri}: ${r.message}`);
  switch (r.type) {
    case REP_ERR_UNKNOWN:
      throw new NbdError('NBD_NO_EXPORT', `${target.uri}: the server has no export named ${JSON.stringify(target.exportName)}${said}`);
    case REP_ERR_TLS_REQD:
      throw tlsRequired(target, r.message);
    default:
      throw new NbdError('NBD_REMOTE', `${target.uri}: the server refused ${what} for the export ${JSON.stringify(target.exportName)} (${replyName(r.type)})${said}`);
  }
}

function isFenced(r: OptionReply): boolean {
  return r.type === REP_ERR_POLICY && r.message.startsWith('fenced:');
}

function tlsRequired(target: NbdTarget, message: string): NbdError {
  return new NbdError('NBD_TLS', `${target.uri}: the server requires TLS (use an nbds URI and certificates)${message ? `: ${message}` : ''}`);
}

function notMember(target: NbdTarget, why: string): NbdError {
  return new NbdError('NBD_NOT_MEMBER', `${target.uri} is not an llraid member service: ${why}`);
}

function protocol(target: NbdTarget, message: string): NbdError {
  return new NbdError('NBD_PROTOCOL', `${target.uri}: ${message}`);
}

function optionRequest(option: number, data: Buffer): Buffer {
  const out = Buffer.allocUnsafe(OPTION_HEADER_SIZE + data.length);
  out.writeBigUInt64BE(IHAVEOPT, 0);
  out.writeUInt32BE(option, 8);
  out.writeUInt32BE(data.length, 12);
  data.copy(out, OPTION_HEADER_SIZE);
  return out;
}

function exportNameBytes(target: NbdTarget, name: string): Buffer {
  const b = Buffer.from(name, 'utf8');
  if (b.length > MAX_STRING) throw new NbdError('NBD_URI', `${target.uri}: an export name is at most ${MAX_STRING} bytes, found ${b.length}`);
  return b;
}

function readSize(target: NbdTarget, b: Buffer, at: number): number {
  const size = b.readBigUInt64BE(at);
  if (size > BigInt(Number.MAX_SAFE_INTEGER)) throw protocol(target, `an export of ${size} bytes is larger than this client addresses`);
  return Number(size);
}

function isPowerOfTwo(n: number): boolean {
  return n > 0 && (n & (n - 1)) === 0;
}

const REPLY_NAMES: Record<number, string> = {
  [REP_ACK]: 'NBD_REP_ACK',
  [REP_INFO]: 'NBD_REP_INFO',
  [REP_META_CONTEXT]: 'NBD_REP_META_CONTEXT',
  [REP_ERR_UNSUP]: 'NBD_REP_ERR_UNSUP',
  [REP_ERR_POLICY]: 'NBD_REP_ERR_POLICY',
  [REP_ERR_INVALID]: 'NBD_REP_ERR_INVALID',
  [REP_ERR_PLATFORM]: 'NBD_REP_ERR_PLATFORM',
  [REP_ERR_TLS_REQD]: 'NBD_REP_ERR_TLS_REQD',
  [REP_ERR_UNKNOWN]: 'NBD_REP_ERR_UNKNOWN',
  [REP_ERR_SHUTDOWN]: 'NBD_REP_ERR_SHUTDOWN',
  [REP_ERR_BLOCK_SIZE_REQD]: 'NBD_REP_ERR_BLOCK_SIZE_REQD',
  [REP_ERR_TOO_BIG]: 'NBD_REP_ERR_TOO_BIG',
};

function replyName(type: number): string {
  return REPLY_NAMES[type] ?? `reply type 0x${type.toString(16)}`;
}
