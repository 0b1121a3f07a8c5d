// The command side of the control protocol: one request, one reply, over the engine's socket.

import { connect } from 'node:net';
import { LlraidError } from '../../common/llraid-error.js';
import { trace } from '../../common/trace.js';
import { CONTROL_ERROR_CODES, type ControlErrorCode, type ControlReply, type ControlRequest } from './protocol.js';

/** A failure the engine reported, with its code (MdError/BlockError codes), or no reply at all. */
export class EngineError extends LlraidError<ControlErrorCode> {}

const KNOWN_CODES = new Set<string>(CONTROL_ERROR_CODES);

export async function controlRequest(path: string, req: ControlRequest): Promise<ControlReply & { ok: true }> {
  trace('engine', 'debug', () => `control ${path}: request ${JSON.stringify(req)}`);
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
  let reply: ControlReply;
  try {
    reply = JSON.parse(line) as ControlReply;
  } catch {
    throw new EngineError('EPROTO', `control socket ${path}: expected a JSON reply, found ${JSON.stringify(line.slice(0, 200))}`);
  }
  if (!reply.ok) {
    const { code, message } = reply.error;
    trace('engine', 'debug', () => `control ${path}: ${req.op} refused: ${message} (${code})`);
    // An engine of another version may know codes this one does not: the message still says why.
    if (!KNOWN_CODES.has(code)) throw new EngineError('EPROTO', `${message} (engine code ${String(code)})`);
    throw new EngineError(code, message);
  }
  return reply;
}
