// The node plugin's side of the engine host (engine-host.ts): an Engines and an Attacher whose
// calls go over the host's unix socket, so NodeServer works the same whether engines run in the
// plugin's own process tree or in the engine host's container. Control requests (status, grow)
// still go straight to each engine's control socket, which sits in the shared run directory.

import { connect } from 'node:net';
import path from 'node:path';
import type { ControlReply, ControlRequest } from '../engine/control/protocol.js';
import { controlRequest } from '../engine/control/client.js';
import type { Attacher } from './attach.js';
import type { Engines } from '../engine/supervisor.js';
import type { EngineHostHello, EngineHostReply, EngineHostRequest } from './engine-host.js';
import { CommandError, CSI_ERROR_CODES, CsiError, type CsiErrorCode } from './errors.js';
import type { ProcessInfo } from '../engine/processes.js';

const CSI_CODES = new Set<string>(CSI_ERROR_CODES);

/** One request to the engine host; its failure comes back as the error the host met. */
export function hostRequest(socketPath: string, req: EngineHostRequest): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const socket = connect(socketPath);
    let buf = '';
    let settled = false;
    const done = (f: () => void): void => {
      if (settled) return;
      settled = true;
      socket.destroy();
      f();
    };
    socket.setEncoding('utf8');
    socket.on('connect', () => socket.write(`${JSON.stringify(req)}\n`));
    socket.on('data', (d: string) => {
      buf += d;
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      const reply = JSON.parse(buf.slice(0, nl)) as EngineHostReply;
      done(() => (reply.ok ? resolve(reply.result) : reject(hostError(reply.error))));
    });
    socket.on('error', (err) => done(() => reject(new CsiError('UNAVAILABLE', `engine host ${socketPath}: ${err.message}; is the llraid-engines container running?`))));
    socket.on('close', () => done(() => reject(new CsiError('UNAVAILABLE', `engine host ${socketPath}: closed before replying to ${req.op}`))));
  });
}

function hostError(e: Extract<EngineHostReply, { ok: false }>['error']): Error {
  if (e.name === 'CommandError') return new CommandError(e.message, e.exitCode ?? null, e.stderr ?? '');
  return new CsiError(CSI_CODES.has(e.code) ? (e.code as CsiErrorCode) : 'INTERNAL', `engine host: ${e.message}`);
}

export class RemoteEngines implements Engines {
  constructor(
    private readonly hostSocket: string,
    private readonly runDir: string,
    /** More `serve` options for every engine (resync speed limits, bitmap daemon period). */
    private readonly serveArgs: readonly string[] = [],
  ) {}

  socket(volumeId: string): string {
    return path.join(this.runDir, volumeId, 'engine.sock');
  }

  controlSocket(volumeId: string): string {
    return path.join(this.runDir, volumeId, 'control.sock');
  }

  control(volumeId: string, req: ControlRequest): Promise<ControlReply & { ok: true }> {
    return controlRequest(this.controlSocket(volumeId), req);
  }

  async find(volumeId: string): Promise<ProcessInfo | undefined> {
    return ((await hostRequest(this.hostSocket, { op: 'engine.find', volumeId })) ?? undefined) as ProcessInfo | undefined;
  }

  async start(volumeId: string, sourceArgs: string[]): Promise<void> {
    await hostRequest(this.hostSocket, { op: 'engine.start', volumeId, args: [...this.serveArgs, ...sourceArgs] });
  }

  async stop(volumeId: string): Promise<void> {
    await hostRequest(this.hostSocket, { op: 'engine.stop', volumeId });
  }

  async adopt(volumeId: string, sourceArgs: string[]): Promise<void> {
    await hostRequest(this.hostSocket, { op: 'engine.adopt', volumeId, args: [...this.serveArgs, ...sourceArgs] });
  }

  async isWanted(volumeId: string): Promise<boolean> {
    return (await hostRequest(this.hostSocket, { op: 'engine.isWanted', volumeId })) === true;
  }
}

export class RemoteAttacher implements Attacher {
  readonly resize: Attacher['resize'];

  private constructor(
    private readonly hostSocket: string,
    readonly mode: Attacher['mode'],
    canResize: boolean,
  ) {
    this.resize = canResize
      ? async (device: string, bytes: number) => void (await hostRequest(hostSocket, { op: 'attach.resize', device, bytes }))
      : undefined;
  }

  /** Asks the host how it attaches (its mode is the node's), then forwards every call. */
  static async connect(hostSocket: string): Promise<{ attacher: RemoteAttacher; hello: EngineHostHello }> {
    const hello = (await hostRequest(hostSocket, { op: 'hello' })) as EngineHostHello;
    return { attacher: new RemoteAttacher(hostSocket, hello.attachMode, hello.canResize), hello };
  }

  async attach(volumeId: string): Promise<string> {
    return (await hostRequest(this.hostSocket, { op: 'attach.attach', volumeId })) as string;
  }

  async find(volumeId: string): Promise<string | undefined> {
    return ((await hostRequest(this.hostSocket, { op: 'attach.find', volumeId })) ?? undefined) as string | undefined;
  }

  async connected(volumeId: string): Promise<boolean> {
    return (await hostRequest(this.hostSocket, { op: 'attach.connected', volumeId })) === true;
  }

  async detach(volumeId: string, _socket: string, lazy = false): Promise<void> {
    await hostRequest(this.hostSocket, { op: 'attach.detach', volumeId, lazy });
  }
}
