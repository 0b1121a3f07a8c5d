// The engine host: the process that owns a node's volume engines and their attachments (nbdfuse
// + loop, or nbd-client), apart from the node plugin. In Kubernetes it runs in its own container
// (the chart's llraid-engines DaemonSet, updated only on delete), so a restart of the node plugin
// — a rolling update, a failed liveness probe, an OOM kill, whose PID namespace takes every child
// down with it — leaves every engine, FUSE server and mounted volume running. The plugin reaches
// it over a unix socket in the run directory (EngineHostClient) with the same calls it makes on
// an in-process EngineSupervisor and Attacher; the wanted set lives here, so an engine that dies
// while the plugin is away is restarted all the same.
//
// Protocol: one JSON request per connection, one JSON reply: {op, ...} → {ok: true, result} or
// {ok: false, error: {name, code, message}}. The socket is mode 0600 in a root-only directory.
// Only these calls exist: the host starts nothing but `llraid serve` (its own build), nbdfuse and
// nbd-client, on paths it derives itself from a validated volume id.

import { createServer, type Server, type Socket } from 'node:net';
import { chmod } from 'node:fs/promises';
import type { Attacher } from './attach.js';
import type { EngineSupervisor } from '../engine/supervisor.js';
import { describeError, trace } from '../common/trace.js';
import { CommandError, CsiError, csiCode, statusDetails } from './errors.js';

/** What a request may ask for; the client (engine-host-client.ts) sends exactly these. */
export type EngineHostRequest =
  | { op: 'hello' }
  | { op: 'engine.find' | 'engine.stop' | 'engine.isWanted'; volumeId: string }
  | { op: 'engine.start' | 'engine.adopt'; volumeId: string; args: string[] }
  | { op: 'attach.attach' | 'attach.find' | 'attach.connected'; volumeId: string }
  | { op: 'attach.detach'; volumeId: string; lazy: boolean }
  | { op: 'attach.resize'; device: string; bytes: number };

export interface EngineHostHello {
  attachMode: Attacher['mode'];
  canResize: boolean;
  /** Whether the host's processes (and so every engine it starts) carry PR_SET_IO_FLUSHER. */
  ioFlusher: boolean;
  pid: number;
}

export type EngineHostReply =
  | { ok: true; result: unknown }
  | { ok: false; error: { name: string; code: string; message: string; exitCode?: number | null; stderr?: string } };

const MAX_REQUEST = 1024 * 1024;
/** What the host accepts as a volume id: it names a directory under the run dir. */
const volumeIdPattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export class EngineHost {
  private server: Server | undefined;

  constructor(
    private readonly engines: EngineSupervisor,
    private readonly attacher: Attacher,
    private readonly hello: Omit<EngineHostHello, 'pid'>,
  ) {}

  async listen(path: string): Promise<void> {
    const server = createServer((socket) => this.serve(socket));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      const old = process.umask(0o177);
      server.listen(path, () => {
        process.umask(old);
        server.off('error', reject);
        resolve();
      });
    });
    await chmod(path, 0o600);
    this.server = server;
    this.engines.supervise();
  }

  async close(): Promise<void> {
    this.engines.close();
    const server = this.server;
    this.server = undefined;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private serve(socket: Socket): void {
    let input = '';
    socket.setEncoding('utf8');
    socket.on('error', () => socket.destroy());
    socket.on('data', (chunk: string) => {
      input += chunk;
      if (input.length > MAX_REQUEST) {
        this.reply(socket, { ok: false, error: { name: 'CsiError', code: 'INVALID_ARGUMENT', message: `engine host: request longer than ${MAX_REQUEST} bytes` } });
        return;
      }
      const nl = input.indexOf('\n');
      if (nl < 0) return;
      socket.pause();
      void this.handle(input.slice(0, nl)).then((r) => this.reply(socket, r));
    });
  }

  private reply(socket: Socket, r: EngineHostReply): void {
    if (!socket.destroyed) socket.end(`${JSON.stringify(r)}\n`);
  }

  private async handle(line: string): Promise<EngineHostReply> {
    let req: EngineHostRequest | undefined;
    try {
      req = parseRequest(line);
      trace('engine', 'info', () => `engine host: ${describeRequest(req!)}`);
      return { ok: true, result: (await this.execute(req)) ?? null };
    } catch (err) {
      trace('engine', 'error', () => `engine host: ${req ? describeRequest(req) : 'request'} failed: ${describeError(err)}`);
      return {
        ok: false,
        error: {
          name: err instanceof Error ? err.name : 'Error',
          // The CSI code the plugin answers with: the host maps once, as toStatus would.
          code: csiCode(err),
          message: statusDetails(err),
          ...(err instanceof CommandError ? { exitCode: err.exitCode, stderr: err.stderr } : {}),
        },
      };
    }
  }

  private execute(req: EngineHostRequest): Promise<unknown> | unknown {
    switch (req.op) {
      case 'hello':
        return { ...this.hello, pid: process.pid } satisfies EngineHostHello;
      case 'engine.find':
        return this.engines.find(req.volumeId);
      case 'engine.start':
        return this.engines.start(req.volumeId, req.args);
      case 'engine.stop':
        return this.engines.stop(req.volumeId);
      case 'engine.adopt':
        return this.engines.adopt(req.volumeId, req.args);
      case 'engine.isWanted':
        return this.engines.isWanted(req.volumeId);
      case 'attach.attach':
        return this.attacher.attach(req.volumeId, this.engines.socket(req.volumeId));
      case 'attach.find':
        return this.attacher.find(req.volumeId, this.engines.socket(req.volumeId));
      case 'attach.connected':
        return this.attacher.connected(req.volumeId, this.engines.socket(req.volumeId));
      case 'attach.detach':
        return this.attacher.detach(req.volumeId, this.engines.socket(req.volumeId), req.lazy);
      case 'attach.resize':
        if (!this.attacher.resize) throw new CsiError('FAILED_PRECONDITION', `${this.attacher.mode} attach cannot resize a device in use`);
        return this.attacher.resize(req.device, req.bytes);
    }
  }
}

/** A request for a trace line: its op and what it names (never the serve arguments in full). */
function describeRequest(req: EngineHostRequest): string {
  if (req.op === 'hello') return req.op;
  if (req.op === 'attach.resize') return `${req.op} ${req.device} to ${req.bytes} bytes`;
  return `${req.op} ${req.volumeId}`;
}

/** `serve` options a client may pass, each with one value; the host sets socket, control and export itself. */
const SERVE_OPTIONS = new Set(['--sync-speed-min', '--sync-speed-max', '--bitmap-daemon-sleep', '--lease-ms', '--epoch', '--member-timeout', '--return-interval']);
/** Options naming a file (the TLS material for members on other nodes): absolute paths only. */
const SERVE_FILE_OPTIONS = new Set(['--tls-cert', '--tls-key', '--tls-ca']);
/** A member on another node: its member service's URI (nbds://HOST:PORT/NAME, query allowed). */
const REMOTE_MEMBER = /^nbds:\/\/[^\s/]+\/[^\s]+$/;

/**
 * The serve arguments of a volume: tuning options with whole-number values, the TLS files and
 * epoch of a replicated volume, then its members — absolute paths or nbds:// URIs.
 */
function checkServeArgs(args: readonly string[], bad: (what: string) => CsiError): void {
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (SERVE_OPTIONS.has(a)) {
      if (!/^\d+$/.test(args[i + 1] ?? '')) throw bad(`a whole number after ${a}`);
      i++;
    } else if (SERVE_FILE_OPTIONS.has(a)) {
      const f = args[i + 1] ?? '';
      if (!f.startsWith('/') || f.includes('\0')) throw bad(`an absolute path after ${a}`);
      i++;
    } else if (a === '--force') {
      continue;
    } else if (REMOTE_MEMBER.test(a)) {
      continue;
    } else if (!a.startsWith('/') || a.includes('\0')) {
      throw bad(`member paths (absolute), nbds:// members or ${[...SERVE_OPTIONS, ...SERVE_FILE_OPTIONS, '--force'].join(', ')} in "args", found ${JSON.stringify(a)}`);
    }
  }
}

/** Checks a request's shape; anything else is INVALID_ARGUMENT naming what was expected. */
export function parseRequest(line: string): EngineHostRequest {
  let v: Record<string, unknown>;
  try {
    v = JSON.parse(line) as Record<string, unknown>;
  } catch {
    throw new CsiError('INVALID_ARGUMENT', `engine host: expected a JSON request, found ${JSON.stringify(line.slice(0, 100))}`);
  }
  const bad = (what: string): CsiError => new CsiError('INVALID_ARGUMENT', `engine host: ${String(v?.op)}: expected ${what}`);
  if (typeof v !== 'object' || v === null || typeof v.op !== 'string') throw new CsiError('INVALID_ARGUMENT', 'engine host: expected {"op": ...}');
  const op = v.op;
  if (op === 'hello') return { op };
  if (op === 'attach.resize') {
    if (typeof v.device !== 'string' || !/^\/dev\/nbd\d+$/.test(v.device)) throw bad('"device": /dev/nbdN');
    if (!Number.isSafeInteger(v.bytes) || (v.bytes as number) <= 0) throw bad('"bytes": a positive whole number');
    return { op, device: v.device, bytes: v.bytes as number };
  }
  if (typeof v.volumeId !== 'string' || !volumeIdPattern.test(v.volumeId)) throw bad('"volumeId": letters, digits, ".", "_" or "-"');
  const volumeId = v.volumeId;
  switch (op) {
    case 'engine.find':
    case 'engine.stop':
    case 'engine.isWanted':
    case 'attach.attach':
    case 'attach.find':
    case 'attach.connected':
      return { op, volumeId };
    case 'engine.start':
    case 'engine.adopt':
      if (!Array.isArray(v.args) || !v.args.every((a) => typeof a === 'string')) throw bad('"args": the serve arguments, strings');
      checkServeArgs(v.args as string[], bad);
      return { op, volumeId, args: v.args as string[] };
    case 'attach.detach':
      return { op, volumeId, lazy: v.lazy === true };
    default:
      throw new CsiError('INVALID_ARGUMENT', `engine host: unknown op ${JSON.stringify(op)}`);
  }
}
