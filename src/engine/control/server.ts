// The engine side of the control protocol (control-protocol.ts): a unix socket, mode 0600,
// JSON lines. A malformed request gets an error reply; it never takes the engine down. The
// socket path is claimed like the NBD socket's: only a stale socket there is replaced.

import { createServer, type Server, type Socket } from 'node:net';
import type { IoCounters } from '../../block/counting-device.js';
import { BlockError, ShutdownError } from '../../block/errors.js';
import { chmod, lstat, rm } from '../../common/callback-fs.js';
import { LlraidError } from '../../common/llraid-error.js';
import { claimSocketPath } from '../../block/socket-file.js';
import { trace } from '../../common/trace.js';
import { MdError, type MdArray } from '../../md/index.js';
import { MAX_LEASE_MS, type LeaseGate } from '../lease-gate.js';
import type { EventSink } from '../events.js';
import { executeControl } from './execute.js';
import { Cutter } from './cut.js';
import { Freezer, MAX_FREEZE_MS } from './freeze.js';
import type { ControlErrorCode, ControlReply, ControlRequest } from './protocol.js';

const OPS = new Set(['status', 'fail', 'remove', 're-add', 'add', 'sync', 'proactive-sync', 'stop-sync', 'grow', 'lease', 'freeze', 'thaw', 'cut', 'cut-status', 'cut-abort', 'stop']);
/** What a cut id may be: the CSI driver's snapshot ids, and names as tools give them. */
const CUT_ID = /^[A-Za-z0-9._-]{1,200}$/;
const MAX_CUT_TARGETS = 64;
const MAX_LINE = 64 * 1024;

export class ControlServer {
  private constructor(
    private readonly server: Server,
    readonly path: string,
    /** The array's snapshot cuts: the engine's stop waits for one being copied. */
    readonly cuts: Cutter,
  ) {}

  /**
   * Listens on `path`. `onStop` runs after a `stop` request has stopped the array and its reply
   * was sent: the engine then shuts its NBD server down and exits. `io`, when given, adds the
   * served device's I/O counters to every reply that carries a status; `lease`, the engine's
   * lease gate, takes `lease` requests and adds the lease to those replies. Whatever is at `path`
   * other than a stale socket (a member file, another engine's live socket) is refused with a
   * SocketPathError and left as it is.
   */
  static async listen(path: string, engine: Engine): Promise<ControlServer> {
    await claimSocketPath(path, 'control socket');
    const freezer = new Freezer(engine.array, engine.events);
    const cuts = new Cutter(engine.array, freezer, engine.events);
    const server = createServer((socket) => serve(socket, engine, freezer, cuts));
    // Mode 0600 before anyone can connect: the umask covers the window until chmod. It is put
    // back whether listen succeeds or fails, so a refused path leaves the process's umask alone.
    const old = process.umask(0o177);
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(path, () => {
          server.off('error', reject);
          resolve();
        });
      });
    } finally {
      process.umask(old);
    }
    await chmod(path, 0o600);
    return new ControlServer(server, path, cuts);
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    // Only our socket goes: should anything else have taken the path meanwhile, it stays.
    const st = await lstat(this.path).catch(() => undefined);
    if (st?.isSocket()) await rm(this.path, { force: true });
  }
}

export interface Engine {
  array: MdArray;
  onStop: () => void;
  io?: () => IoCounters;
  lease?: LeaseGate;
  /** The engine's event sink (freeze and thaw are reported there). */
  events?: EventSink;
}

function serve(socket: Socket, engine: Engine, freezer: Freezer, cuts: Cutter): void {
  let pending = '';
  let queue = Promise.resolve();
  socket.setEncoding('utf8');
  socket.on('error', () => socket.destroy());
  socket.on('data', (chunk: string) => {
    pending += chunk;
    if (pending.length > MAX_LINE && !pending.includes('\n')) {
      reply(socket, { ok: false, error: { code: 'EINVAL', message: `request longer than ${MAX_LINE} bytes` } });
      socket.end();
      return;
    }
    let nl: number;
    while ((nl = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      // Requests on one connection are answered in order.
      queue = queue.then(() => handle(socket, line, engine, freezer, cuts));
    }
  });
}

async function handle(socket: Socket, line: string, engine: Engine, freezer: Freezer, cuts: Cutter): Promise<void> {
  let req: ControlRequest;
  try {
    req = parseRequest(line);
  } catch (err) {
    reply(socket, { ok: false, error: { code: 'EINVAL', message: (err as Error).message } });
    return;
  }
  // Status is asked every few seconds by the node plugin: only debug shows it.
  trace('engine', req.op === 'status' ? 'debug' : 'info', () => `control: ${line}`);
  try {
    const lease = engine.lease;
    // Held writes fail before the array stops: none may reach a member once the stop began.
    if (req.op === 'stop') {
      lease?.shut(new ShutdownError('the engine is stopping (control stop)'));
      // A stop during a freeze lets the held requests go on to meet the stop.
      await freezer.end();
    }
    const r = await answer(req, engine, freezer, cuts);
    reply(socket, r.status ? { ...r, ...(engine.io ? { io: { ...engine.io() } } : {}), ...(lease ? { lease: lease.status() } : {}) } : r);
    if (req.op === 'stop') engine.onStop();
  } catch (err) {
    const error = replyError(err);
    trace('engine', 'info', () => `control ${req.op}: refused: ${error.message} (${error.code})`);
    reply(socket, { ok: false, error });
  }
}

/** The ops a served array answers itself (a lease, a pause, a cut); the rest as any array does. */
async function answer(req: ControlRequest, engine: Engine, freezer: Freezer, cuts: Cutter): Promise<ControlReply & { ok: true }> {
  switch (req.op) {
    case 'lease':
      return engine.lease === undefined ? executeControl(engine.array, req) : { ok: true, lease: engine.lease.extend(req.ms) };
    case 'freeze':
      return { ok: true, ...(await freezer.freeze(req.timeoutMs, req.consistency ?? 'clean')) };
    case 'thaw':
      return { ok: true, ...(await freezer.thaw()) };
    case 'cut':
      return { ok: true, ...(await cuts.cut(req.id, req.targets, req.timeoutMs, req.consistency ?? 'clean')) };
    case 'cut-status':
      return { ok: true, cut: cuts.status(req.id) };
    case 'cut-abort':
      await cuts.abort(req.id);
      return { ok: true, cut: cuts.status(req.id) };
    default:
      return executeControl(engine.array, req);
  }
}

/**
 * The control protocol's one mapping from an error to a reply: md and block errors keep their
 * code (the client's EngineError carries it on, and the CLI and CSI map it as they map those
 * families); anything else is the engine failing the request, EIO, with its message.
 */
function replyError(err: unknown): { code: ControlErrorCode; message: string } {
  if (err instanceof MdError || err instanceof BlockError) return { code: err.code, message: err.message };
  if (!(err instanceof LlraidError)) trace('engine', 'error', () => `control: unexpected error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  return { code: 'EIO', message: err instanceof Error ? err.message : String(err) };
}

function parseRequest(line: string): ControlRequest {
  const v = JSON.parse(line) as Record<string, unknown>;
  if (typeof v !== 'object' || v === null || typeof v.op !== 'string' || !OPS.has(v.op)) {
    throw new Error(`expected a request {"op": one of ${[...OPS].join(', ')}}, found ${line.slice(0, 200)}`);
  }
  if (['fail', 'remove', 're-add', 'add'].includes(v.op) && typeof v.member !== 'string') {
    throw new Error(`${v.op}: expected a "member" path`);
  }
  if (v.op === 'grow' && v.memberBytes !== 'max' && !(Number.isSafeInteger(v.memberBytes) && (v.memberBytes as number) > 0)) {
    throw new Error(`grow: expected "memberBytes": a positive whole number of bytes or "max", found ${JSON.stringify(v.memberBytes)}`);
  }
  if (v.op === 'lease' && !(Number.isSafeInteger(v.ms) && (v.ms as number) >= 0 && (v.ms as number) <= MAX_LEASE_MS)) {
    throw new Error(`lease: expected "ms": a whole number of milliseconds from 0 to ${MAX_LEASE_MS}, found ${JSON.stringify(v.ms)}`);
  }
  if ((v.op === 'freeze' || v.op === 'cut') && !(Number.isSafeInteger(v.timeoutMs) && (v.timeoutMs as number) > 0 && (v.timeoutMs as number) <= MAX_FREEZE_MS)) {
    throw new Error(`${v.op}: expected "timeoutMs": a whole number of milliseconds from 1 to ${MAX_FREEZE_MS}, found ${JSON.stringify(v.timeoutMs)}`);
  }
  if ((v.op === 'freeze' || v.op === 'cut') && v.consistency !== undefined && v.consistency !== 'clean' && v.consistency !== 'crash') {
    throw new Error(`${v.op}: expected "consistency": clean or crash, found ${JSON.stringify(v.consistency)}`);
  }
  if ((v.op === 'cut' || v.op === 'cut-status' || v.op === 'cut-abort') && !(typeof v.id === 'string' && CUT_ID.test(v.id))) {
    throw new Error(`${v.op}: expected "id": 1 to 200 letters, digits, '.', '_' or '-', found ${JSON.stringify(v.id)?.slice(0, 220)}`);
  }
  if (v.op === 'cut') checkCutTargets(v.targets);
  if (v.op === 'sync' && !['resync', 'recovery', 'check', 'repair'].includes(v.mode as string)) {
    throw new Error(`sync: expected mode resync, recovery, check or repair, found ${JSON.stringify(v.mode)}`);
  }
  return v as unknown as ControlRequest;
}

function checkCutTargets(targets: unknown): void {
  const ok = Array.isArray(targets) && targets.length >= 1 && targets.length <= MAX_CUT_TARGETS && targets.every((t: unknown) => {
    const x = t as Record<string, unknown> | null;
    return typeof x === 'object' && x !== null && typeof x.member === 'string' && x.member !== '' && typeof x.to === 'string' && x.to.startsWith('/') && !x.to.includes('\0');
  });
  if (!ok) throw new Error(`cut: expected "targets": 1 to ${MAX_CUT_TARGETS} of {"member": a member file's path, "to": an absolute path for its copy}`);
}

function reply(socket: Socket, r: ControlReply): void {
  if (!socket.destroyed) socket.write(`${JSON.stringify(r)}\n`);
}
