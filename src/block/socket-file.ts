// Taking over the path a unix socket server is about to listen on. Every llraid server that
// listens on a path (the NBD server, the md engine's control socket, the CSI plugin) clears it
// with claimSocketPath first, so none of them deletes anything but a stale socket. It lives in
// the bottom layer because all three layers (nbd, md, csi) import from here and not each other.

import { lstatSync, unlinkSync, type Stats } from 'node:fs';
import { createConnection } from 'node:net';
import { LlraidError } from '../common/llraid-error.js';

export const SOCKET_PATH_ERROR_CODES = [
  'ENOTSOCK', // something other than a socket is at the path: a file, a directory, a link...
  'EADDRINUSE', // a socket at the path accepts connections: another server owns it
] as const;
export type SocketPathErrorCode = (typeof SOCKET_PATH_ERROR_CODES)[number];

export class SocketPathError extends LlraidError<SocketPathErrorCode> {}

/** What an lstat mode says is at a path, for messages. */
function describeKind(st: Stats): string {
  if (st.isFile()) return `a regular file (${st.size} bytes)`;
  if (st.isDirectory()) return 'a directory';
  if (st.isSymbolicLink()) return 'a symlink';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isFIFO()) return 'a FIFO';
  return 'something that is not a socket';
}

/** Whether a server accepts connections on the unix socket at `path`. */
export function socketAccepts(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = createConnection(path);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
}

/**
 * Checks that a server may listen on `path`: nothing is there, or a stale socket (left by a
 * server that died, e.g. kill -9, which would make bind fail with EADDRINUSE) that nobody
 * accepts on. Anything else is a SocketPathError naming `what` and the path, and stays as it
 * is: a file (a member, a config, anything the path happens to name) is never deleted, and a
 * live server's socket is never stolen. Resolves with 'stale' when it found a stale socket,
 * which it leaves for claimSocketPath to remove.
 */
export async function checkSocketPath(path: string, what: string): Promise<'absent' | 'stale'> {
  let st;
  try {
    st = lstatSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'absent';
    throw err;
  }
  if (!st.isSocket()) {
    throw new SocketPathError('ENOTSOCK', `${what} ${path}: expected no file or a stale socket there, found ${describeKind(st)}; left it in place`);
  }
  if (await socketAccepts(path)) {
    throw new SocketPathError('EADDRINUSE', `${what} ${path}: expected no file or a stale socket there, found a live socket (another server accepts connections on it)`);
  }
  return 'stale';
}

/** checkSocketPath, then removes the stale socket it found, so that listen can bind. */
export async function claimSocketPath(path: string, what: string): Promise<void> {
  if ((await checkSocketPath(path, what)) === 'stale') {
    try {
      unlinkSync(path);
    } catch (err) {
      // Another claimant removed it first: the path is free all the same.
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
}
