// Claiming the path of a unix socket a daemon is about to listen on. A socket file left by a
// process that died (kill -9) makes bind fail, so it is removed, but only when nothing accepts
// on it; a live one (another daemon) and anything that is not a socket are refused, never deleted.

import { createConnection } from 'node:net';
import { lstat, unlink } from 'node:fs/promises';

export class SocketPathError extends Error {
  readonly code = 'EADDRINUSE';
  constructor(message: string) {
    super(message);
    this.name = 'SocketPathError';
  }
}

export async function claimSocketPath(path: string): Promise<void> {
  let isSocket: boolean;
  try {
    isSocket = (await lstat(path)).isSocket();
  } catch {
    return;
  }
  if (!isSocket) throw new SocketPathError(`${path}: exists and is not a socket; refusing to replace it`);
  const alive = await new Promise<boolean>((resolve) => {
    const probe = createConnection(path);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (alive) throw new SocketPathError(`${path}: another process is listening on it`);
  await unlink(path);
}
