// Reading a socket into buffers the reader chooses: Node's "onread" mode, where each read(2) lands
// in a buffer the reader returns for it, instead of a fresh 64 KiB buffer per read. The NBD
// connection uses it so that a WRITE's payload lands straight in the buffer its device write uses
// (no copy, no Buffer.concat for an array) and everything else lands in one reused buffer: no
// garbage per read, which V8 collects late (an engine under 1 MiB writes grew by 40-60 MiB of it).
//
// Node 20 takes the `onread` option on sockets it connects, not on those a server accepts. The
// accepted socket is switched into the same mode here through the fields net.Socket keeps that
// option in (three symbols it describes as kBuffer, kBufferGen, kBufferCb) and its handle's
// useUserBuffer(), before the first read (the server accepts with pauseOnConnect). Where those
// fields are not found (another Node), receiveInto() returns false and the caller reads 'data'
// events as before; test/nbd/socket-receiver.test.ts fails if that happens on the Node we ship.

import type { Socket } from 'node:net';

export interface Receiver {
  /** Where the next read may land (at least one byte). Called before every read. */
  target(): Uint8Array;
  /** `n` bytes (at least one) landed at the start of the last target. */
  landed(n: number): void;
}

interface OnreadFields {
  buffer: symbol;
  generator: symbol;
  callback: symbol;
}

/**
 * Switches `socket`, accepted paused and not yet read from, to reading into `receiver`'s targets.
 * Returns false, changing nothing, where this Node does not have the fields it needs. Pausing and
 * resuming the socket work as before; 'end' and 'close' are emitted as before; 'data' never is.
 */
export function receiveInto(socket: Socket, receiver: Receiver): boolean {
  const fields = onreadFields(socket);
  const handle = (socket as unknown as { _handle?: { useUserBuffer?: (b: Uint8Array) => void } })._handle;
  if (fields === undefined || typeof handle?.useUserBuffer !== 'function') return false;
  const first = receiver.target();
  const s = socket as unknown as Record<symbol, unknown>;
  s[fields.buffer] = first;
  s[fields.generator] = () => receiver.target();
  // Never false: a false return stops reading behind the socket's back; the caller pauses instead.
  s[fields.callback] = (n: number) => {
    receiver.landed(n);
  };
  handle.useUserBuffer(first);
  return true;
}

function onreadFields(socket: Socket): OnreadFields | undefined {
  const bySymbol = new Map(Object.getOwnPropertySymbols(socket).map((s) => [s.description, s]));
  const [buffer, generator, callback] = ['kBuffer', 'kBufferGen', 'kBufferCb'].map((d) => bySymbol.get(d));
  if (buffer === undefined || generator === undefined || callback === undefined) return undefined;
  return { buffer, generator, callback };
}
