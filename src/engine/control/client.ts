// The command side of the control protocol: one request, one reply, over the engine's socket.

import { connect } from 'node:net';
import type { ControlReply, ControlRequest } from './protocol.js';

/** A failure the engine reported, with its code (MdError/BlockError codes). */
export class EngineError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'EngineError';
  }
}

export async function controlRequest(path: string, req: ControlRequest): Promise<ControlReply & { ok: true }> {
  const line = await new Promise<string>((resolve, reject) => {
    const socket = connect(path);
    let buf = '';
    socket.setEncoding('utf8');
    socket.on('connect', () => socket.write(`${JSON.stringify(req)}\n`));
    socket.on('data', (d: string) => {
      buf += d;
      const nl = buf.indexOf('\n');
      if (nl >= 0) {
        socket.end();
        resolve(buf.slice(0, nl));
      }
    });
    socket.on('error', (err) => reject(new EngineError('ECONNREFUSED', `control socket ${path}: ${err.message}`)));
    socket.on('close', () => reject(new EngineError('EIO', `control socket ${path}: closed before replying`)));
  });
  const reply = JSON.parse(line) as ControlReply;
  if (!reply.ok) throw new EngineError(reply.error.code, reply.error.message);
  return reply;
}
