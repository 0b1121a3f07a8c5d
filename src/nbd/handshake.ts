// The server side of the fixed newstyle handshake: greeting, client flags, then option haggling
// until NBD_OPT_GO or NBD_OPT_EXPORT_NAME picks an export (or the client aborts). Unknown options
// get NBD_REP_ERR_UNSUP and haggling goes on; malformed option data gets NBD_REP_ERR_INVALID.
// An option longer than the server reads gets NBD_REP_ERR_TOO_BIG, its data dropped unread. Only
// a broken frame (bad magic, unknown client flag, an oversized EXPORT_NAME) ends the connection.
//
// TLS, when the connection requires it, is NBD_OPT_STARTTLS in what proto.md calls FORCEDTLS
// mode: before TLS only STARTTLS and ABORT are served, every other option is answered
// NBD_REP_ERR_TLS_REQD, and NBD_OPT_EXPORT_NAME (which has no error reply) ends the connection.
// After the TLS handshake haggling starts over: nothing negotiated in clear text carries over.

import { NbdError } from './errors.js';
import { isRefusal, type Attachment, type ExportRefusal, type ExportSource, type NbdExport, type ServedConnection } from './export.js';
import {
  BASE_ALLOCATION,
  CLIENT_FIXED_NEWSTYLE,
  CLIENT_NO_ZEROES,
  FLAG_FIXED_NEWSTYLE,
  FLAG_NO_ZEROES,
  GREETING_SIZE,
  IHAVEOPT,
  INFO_BLOCK_SIZE,
  INFO_DESCRIPTION,
  INFO_EXPORT,
  INFO_NAME,
  KNOWN_CLIENT_FLAGS,
  MAX_STRING,
  NBD_MAGIC,
  OPTION_HEADER_SIZE,
  OPTION_REPLY_HEADER_SIZE,
  OPTION_REPLY_MAGIC,
  OPT_ABORT,
  OPT_EXPORT_NAME,
  OPT_GO,
  OPT_INFO,
  OPT_LIST,
  OPT_LIST_META_CONTEXT,
  OPT_SET_META_CONTEXT,
  OPT_STARTTLS,
  OPT_STRUCTURED_REPLY,
  REP_ACK,
  REP_ERR_INVALID,
  REP_ERR_POLICY,
  REP_ERR_TLS_REQD,
  REP_ERR_TOO_BIG,
  REP_ERR_UNKNOWN,
  REP_ERR_UNSUP,
  REP_INFO,
  REP_META_CONTEXT,
  REP_SERVER,
} from './protocol.js';
import { writeU64 } from './reply-writer.js';

/** Longest option data read; no valid option comes near it (names and queries are ≤ 4 KiB). */
export const MAX_OPTION_LENGTH = 64 * 1024;
/** Queries accepted in one LIST/SET_META_CONTEXT; more get NBD_REP_ERR_TOO_BIG. */
const MAX_QUERIES = 128;
/** The context id of `base:allocation` on every connection; other contexts count up from it. */
export const BASE_ALLOCATION_ID = 1;

export interface HandshakeIo {
  /** Resolves with exactly `n` bytes; rejects with NBD_CLOSED when the peer goes away. */
  read(n: number): Promise<Buffer>;
  /** Resolves once `n` more bytes have arrived and been dropped, never holding them all. */
  skip(n: number): Promise<void>;
  write(data: Buffer): void;
  /**
   * Present when this connection requires TLS: sends `ack` (the STARTTLS reply) in clear text,
   * then runs the TLS handshake on the same socket; resolves once the client is authenticated,
   * rejects (the connection is closed) when the handshake fails.
   */
  startTls?(ack: Buffer): Promise<void>;
}

/** A meta context selected for the export: its id on this connection and its name. */
export interface MetaContext {
  id: number;
  name: string;
}

export interface Negotiated {
  attachment: Attachment;
  structured: boolean;
  /** The meta contexts selected for this export, base:allocation first if selected; BLOCK_STATUS needs one. */
  contexts: MetaContext[];
}

/** Runs the handshake; resolves with the chosen export, or undefined when the client aborted. */
export async function negotiate(io: HandshakeIo, exports: ExportSource, connection: ServedConnection): Promise<Negotiated | undefined> {
  const greeting = Buffer.alloc(GREETING_SIZE);
  greeting.writeBigUInt64BE(NBD_MAGIC, 0);
  greeting.writeBigUInt64BE(IHAVEOPT, 8);
  greeting.writeUInt16BE(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES, 16);
  io.write(greeting);

  const clientFlags = (await io.read(4)).readUInt32BE(0);
  if ((clientFlags & ~KNOWN_CLIENT_FLAGS) !== 0) {
    throw new NbdError('NBD_PROTOCOL', `client flags 0x${clientFlags.toString(16)} include bits this server does not know`);
  }
  if ((clientFlags & CLIENT_FIXED_NEWSTYLE) === 0) {
    // Without fixed newstyle the client cannot parse error replies to unknown options.
    throw new NbdError('NBD_PROTOCOL', 'client does not speak fixed newstyle negotiation');
  }
  const noZeroes = (clientFlags & CLIENT_NO_ZEROES) !== 0;
  let state = new HaggleState();
  /** True while TLS is required and not yet on. */
  let clearText = io.startTls !== undefined;

  for (;;) {
    const header = await io.read(OPTION_HEADER_SIZE);
    const magic = header.readBigUInt64BE(0);
    if (magic !== IHAVEOPT) throw new NbdError('NBD_PROTOCOL', `expected option magic IHAVEOPT, found 0x${magic.toString(16)}`);
    const option = header.readUInt32BE(8);
    const length = header.readUInt32BE(12);
    const reply = (type: number, body?: Buffer): void => io.write(optionReply(option, type, body));
    const refuse = (r: ExportRefusal): void => reply(r.refused === 'unknown' ? REP_ERR_UNKNOWN : REP_ERR_POLICY, Buffer.from(r.message));
    if (length > MAX_OPTION_LENGTH) {
      // EXPORT_NAME has no error reply; any other option is answered and haggling goes on.
      if (option === OPT_EXPORT_NAME) {
        throw new NbdError('NBD_PROTOCOL', `NBD_OPT_EXPORT_NAME carries ${length} bytes, more than the ${MAX_OPTION_LENGTH} accepted`);
      }
      // proto.md: the option length "allows the server to skip any options presented by the
      // client that it does not understand"; NBD_REP_ERR_TOO_BIG: "The request or the reply is
      // too large to process". The length is 32-bit: the data is dropped as it comes, never held.
      await io.skip(length);
      reply(REP_ERR_TOO_BIG, Buffer.from(`option ${option} carries ${length} bytes of data, more than the ${MAX_OPTION_LENGTH} this server reads`));
      continue;
    }
    const data = await io.read(length);

    if (clearText && option !== OPT_STARTTLS && option !== OPT_ABORT) {
      // proto.md, FORCEDTLS: "the server MUST reply with NBD_REP_ERR_TLS_REQD" to any option
      // but STARTTLS and ABORT; NBD_OPT_EXPORT_NAME cannot be answered, so the server closes.
      if (option === OPT_EXPORT_NAME) throw new NbdError('NBD_PROTOCOL', 'client sent NBD_OPT_EXPORT_NAME before NBD_OPT_STARTTLS on a server that requires TLS');
      reply(REP_ERR_TLS_REQD, Buffer.from('this server requires TLS: send NBD_OPT_STARTTLS first (nbds:// URIs)'));
      continue;
    }

    switch (option) {
      case OPT_STARTTLS:
        if (!clearText) {
          // Without TLS configured (a unix socket) STARTTLS is unsupported; a second one after
          // TLS is on is invalid (proto.md, NBD_OPT_STARTTLS).
          if (io.startTls === undefined) reply(REP_ERR_UNSUP, Buffer.from('this server has no TLS on this socket'));
          else reply(REP_ERR_INVALID, Buffer.from('TLS is already on'));
          break;
        }
        if (length !== 0) {
          reply(REP_ERR_INVALID, Buffer.from('NBD_OPT_STARTTLS takes no data'));
          break;
        }
        await io.startTls!(optionReply(option, REP_ACK));
        clearText = false;
        state = new HaggleState();
        break;
      case OPT_EXPORT_NAME: {
        const name = data.toString('utf8');
        const got = await exports.attach({ name, contexts: [], structured: state.structured, connection });
        // EXPORT_NAME has no error reply: a refusal can only end the connection.
        if (isRefusal(got)) throw new NbdError('NBD_PROTOCOL', `client asked for export ${JSON.stringify(name)} with NBD_OPT_EXPORT_NAME, refused: ${got.message}`);
        const chosen = got.export;
        const out = Buffer.alloc(noZeroes ? 10 : 134);
        writeU64(out, 0, chosen.size);
        out.writeUInt16BE(chosen.transmissionFlags(state.structured), 8);
        io.write(out);
        return { attachment: got, structured: state.structured, contexts: [] };
      }
      case OPT_ABORT:
        reply(REP_ACK);
        return undefined;
      case OPT_LIST:
        if (length !== 0) {
          reply(REP_ERR_INVALID, Buffer.from('NBD_OPT_LIST takes no data'));
          break;
        }
        for (const e of await exports.list()) reply(REP_SERVER, serverEntry(e));
        reply(REP_ACK);
        break;
      case OPT_INFO:
      case OPT_GO: {
        const parsed = parseInfoRequest(data);
        if (typeof parsed === 'string') {
          reply(REP_ERR_INVALID, Buffer.from(parsed));
          break;
        }
        const going = option === OPT_GO;
        const contexts = state.contextsFor(parsed.name);
        const got = going
          ? await exports.attach({ name: parsed.name, contexts: contexts.map((c) => c.name), structured: state.structured, connection })
          : await exports.inspect(parsed.name);
        if (isRefusal(got)) {
          refuse(got);
          break;
        }
        const chosen = got.export;
        reply(REP_INFO, infoExport(chosen, state.structured));
        // Always sent: this server enforces the device's block size, so clients must know it.
        reply(REP_INFO, infoBlockSize(chosen));
        if (parsed.infos.includes(INFO_NAME)) reply(REP_INFO, infoString(INFO_NAME, chosen.name));
        if (parsed.infos.includes(INFO_DESCRIPTION) && chosen.description) {
          reply(REP_INFO, infoString(INFO_DESCRIPTION, chosen.description));
        }
        reply(REP_ACK);
        if (going) return { attachment: got, structured: state.structured, contexts };
        await got.release?.();
        break;
      }
      case OPT_STRUCTURED_REPLY:
        if (length !== 0) {
          reply(REP_ERR_INVALID, Buffer.from('NBD_OPT_STRUCTURED_REPLY takes no data'));
          break;
        }
        state.structured = true;
        reply(REP_ACK);
        break;
      case OPT_LIST_META_CONTEXT:
      case OPT_SET_META_CONTEXT: {
        const setting = option === OPT_SET_META_CONTEXT;
        // SET replaces the selection even when it fails (proto.md, NBD_OPT_SET_META_CONTEXT).
        if (setting) state.selected = undefined;
        if (!state.structured) {
          reply(REP_ERR_INVALID, Buffer.from('meta contexts need structured replies first'));
          break;
        }
        const parsed = parseMetaRequest(data);
        if (typeof parsed === 'string') {
          reply(parsed === TOO_MANY ? REP_ERR_TOO_BIG : REP_ERR_INVALID, Buffer.from(parsed));
          break;
        }
        if (!(await exports.has(parsed.name))) {
          reply(REP_ERR_UNKNOWN, Buffer.from(`no export named ${JSON.stringify(parsed.name)}`));
          break;
        }
        const accepts = (q: string): boolean => exports.acceptsMetaContext?.(parsed.name, q) ?? false;
        if (setting) {
          const chosen: MetaContext[] = [];
          let nextId = BASE_ALLOCATION_ID + 1;
          for (const q of parsed.queries) {
            if (chosen.some((c) => c.name === q) || (q !== BASE_ALLOCATION && !accepts(q))) continue;
            chosen.push({ id: q === BASE_ALLOCATION ? BASE_ALLOCATION_ID : nextId++, name: q });
          }
          for (const c of chosen) reply(REP_META_CONTEXT, metaContext(c.id, c.name));
          state.selected = { exportName: parsed.name, contexts: chosen };
        } else {
          // LIST: no query lists base:allocation; a query lists itself when it is a context
          // (contexts a source serves are named in full: there is no list of them to give).
          const listed = parsed.queries.length === 0 || parsed.queries.some((q) => q === 'base:' || q === BASE_ALLOCATION);
          if (listed) reply(REP_META_CONTEXT, metaContext(0, BASE_ALLOCATION));
          for (const q of new Set(parsed.queries)) if (q !== BASE_ALLOCATION && accepts(q)) reply(REP_META_CONTEXT, metaContext(0, q));
        }
        reply(REP_ACK);
        break;
      }
      default:
        reply(REP_ERR_UNSUP, Buffer.from(`option ${option} is not supported`));
    }
  }
}

class HaggleState {
  structured = false;
  /** What the last NBD_OPT_SET_META_CONTEXT selected, and for which export; none after a failed one. */
  selected: { exportName: string; contexts: MetaContext[] } | undefined;

  /**
   * The contexts in force for `name`: proto.md lets a server treat a GO for another export than
   * the SET's as having selected nothing. Meta contexts need structured replies.
   */
  contextsFor(name: string): MetaContext[] {
    if (!this.structured || this.selected?.exportName !== name) return [];
    return [...this.selected.contexts].sort((a, b) => a.id - b.id);
  }
}

function optionReply(option: number, type: number, body?: Buffer): Buffer {
  const length = body?.length ?? 0;
  const out = Buffer.allocUnsafe(OPTION_REPLY_HEADER_SIZE + length);
  out.writeBigUInt64BE(OPTION_REPLY_MAGIC, 0);
  out.writeUInt32BE(option, 8);
  out.writeUInt32BE(type, 12);
  out.writeUInt32BE(length, 16);
  body?.copy(out, OPTION_REPLY_HEADER_SIZE);
  return out;
}

function serverEntry(e: { name: string; description: string }): Buffer {
  const name = Buffer.from(e.name, 'utf8');
  const out = Buffer.alloc(4 + name.length + Buffer.byteLength(e.description));
  out.writeUInt32BE(name.length, 0);
  name.copy(out, 4);
  out.write(e.description, 4 + name.length, 'utf8');
  return out;
}

function infoExport(e: NbdExport, structured: boolean): Buffer {
  const out = Buffer.alloc(12);
  out.writeUInt16BE(INFO_EXPORT, 0);
  writeU64(out, 2, e.size);
  out.writeUInt16BE(e.transmissionFlags(structured), 10);
  return out;
}

function infoBlockSize(e: NbdExport): Buffer {
  const out = Buffer.alloc(14);
  out.writeUInt16BE(INFO_BLOCK_SIZE, 0);
  out.writeUInt32BE(e.minBlock, 2);
  out.writeUInt32BE(e.preferredBlock, 6);
  out.writeUInt32BE(e.maxPayload, 10);
  return out;
}

function infoString(type: number, value: string): Buffer {
  const s = Buffer.from(value, 'utf8');
  const out = Buffer.alloc(2 + s.length);
  out.writeUInt16BE(type, 0);
  s.copy(out, 2);
  return out;
}

function metaContext(id: number, name: string): Buffer {
  const s = Buffer.from(name, 'utf8');
  const out = Buffer.alloc(4 + s.length);
  out.writeUInt32BE(id, 0);
  s.copy(out, 4);
  return out;
}

/** Reads a length-prefixed string at `at`; a string when it does not fit, else [value, next]. */
function readString(data: Buffer, at: number, what: string): [string, number] | string {
  if (at + 4 > data.length) return `${what}: expected a 4-byte length at ${at}, option has ${data.length} bytes`;
  const n = data.readUInt32BE(at);
  if (n > MAX_STRING) return `${what}: length ${n} exceeds ${MAX_STRING} bytes`;
  if (at + 4 + n > data.length) return `${what}: length ${n} runs past the option data (${data.length} bytes)`;
  return [data.toString('utf8', at + 4, at + 4 + n), at + 4 + n];
}

/** NBD_OPT_INFO / NBD_OPT_GO data: name, then a count and that many 16-bit info requests. */
function parseInfoRequest(data: Buffer): { name: string; infos: number[] } | string {
  const name = readString(data, 0, 'export name');
  if (typeof name === 'string') return name;
  const [value, at] = name;
  if (at + 2 > data.length) return `expected a 16-bit request count at ${at}, option has ${data.length} bytes`;
  const count = data.readUInt16BE(at);
  if (at + 2 + count * 2 !== data.length) {
    return `${count} info requests need ${at + 2 + count * 2} bytes of option data, found ${data.length}`;
  }
  const infos: number[] = [];
  for (let i = 0; i < count; i++) infos.push(data.readUInt16BE(at + 2 + i * 2));
  return { name: value, infos };
}

const TOO_MANY = `more than ${MAX_QUERIES} queries`;

/** LIST/SET_META_CONTEXT data: name, then a 32-bit count and that many strings. */
function parseMetaRequest(data: Buffer): { name: string; queries: string[] } | string {
  const name = readString(data, 0, 'export name');
  if (typeof name === 'string') return name;
  let at = name[1];
  if (at + 4 > data.length) return `expected a 32-bit query count at ${at}, option has ${data.length} bytes`;
  const count = data.readUInt32BE(at);
  at += 4;
  if (count > MAX_QUERIES) return TOO_MANY;
  const queries: string[] = [];
  for (let i = 0; i < count; i++) {
    const q = readString(data, at, `query ${i}`);
    if (typeof q === 'string') return q;
    queries.push(q[0]);
    at = q[1];
  }
  if (at !== data.length) return `option data has ${data.length - at} bytes after the last query`;
  return { name: name[0], queries };
}
