// node:fs's callback functions, promisified: the file calls of everything an engine (`llraid
// serve`, one process per staged volume) runs. node:fs/promises is a module of its own, and the
// first use of it (an import, or `fs.promises`) loads readline's modules with it: 0.45 MiB more
// RSS in every engine, measured in a node already listening on a socket. The callback functions
// are loaded with node:fs anyway, and on the I/O path cost less per call than a FileHandle's
// methods (no handle bookkeeping). test/cli/engine-modules.test.ts checks that an engine never
// loads fs/promises; code that only the CLI or the node plugin runs may use it freely.

import * as fs from 'node:fs';
import { promisify } from 'node:util';

export const open = promisify(fs.open);
export const close = promisify(fs.close);
export const fstat = promisify(fs.fstat);
export const ftruncate = promisify(fs.ftruncate);
export const fsync = promisify(fs.fsync);
export const fdatasync = promisify(fs.fdatasync);
export const stat = promisify(fs.stat);
export const lstat = promisify(fs.lstat);
export const statfs = promisify(fs.statfs);
export const chmod = promisify(fs.chmod);
export const rename = promisify(fs.rename);
export const rm = promisify(fs.rm);
export const mkdir = promisify(fs.mkdir);
export const readdir = promisify(fs.readdir);
export const readFile = promisify(fs.readFile);
export const writeFile = promisify(fs.writeFile);

// The positional calls, written out rather than promisified: util.promisify(fs.read) resolves to
// an object ({ bytesRead, buffer }), one more allocation per member read on the I/O path.

/** Reads up to `len` bytes at `pos` into `buf` from `off`; resolves to the bytes read (fewer at the end of the file). */
export function readP(fd: number, buf: Uint8Array, off: number, len: number, pos: number): Promise<number> {
  return new Promise((resolve, reject) => fs.read(fd, buf, off, len, pos, (e, n) => (e ? reject(e) : resolve(n))));
}

export function writeP(fd: number, buf: Uint8Array, off: number, len: number, pos: number): Promise<number> {
  return new Promise((resolve, reject) => fs.write(fd, buf, off, len, pos, (e, n) => (e ? reject(e) : resolve(n))));
}

export function writevP(fd: number, parts: readonly Uint8Array[], pos: number): Promise<number> {
  return new Promise((resolve, reject) => fs.writev(fd, parts as Uint8Array[], pos, (e, n) => (e ? reject(e) : resolve(n))));
}
