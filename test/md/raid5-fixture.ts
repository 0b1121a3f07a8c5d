// Test fixture for the raid5/raid6 tests: a MemberSet over real member files in a temp dir that
// keeps the MemberSet invariant (an I/O error fails the role before the promise rejects), plus an
// independent parity check that recomputes P and Q from the member files byte by byte.
import { join } from 'node:path';
import { readInto, type BlockDevice, type WriteOptions, type ZeroOptions } from '../../src/block/block-device.js';
import { FileDevice } from '../../src/block/file-device.js';
import { FilterDevice } from '../../src/block/filter-device.js';
import { IoError } from '../../src/block/errors.js';
import type { MemberSet, RoleState } from '../../src/md/personality.js';
import type { ParityLayout } from '../../src/md/parity/layout.js';
import { createArray, type CreateOptions } from '../../src/md/index.js';
import { DATA_OFFSET, memberFiles as memberPaths, tempDir } from './array-fixtures.js';

export class FileMembers implements MemberSet {
  readonly states: RoleState[];
  readonly reads: number[];
  constructor(
    public devices: BlockDevice[],
    readonly memberSize: number,
  ) {
    this.states = devices.map(() => 'in_sync');
    this.reads = devices.map(() => 0);
  }
  get raidDisks(): number {
    return this.devices.length;
  }
  get blockSize(): number {
    return Math.max(512, ...this.devices.map((d) => d.blockSize));
  }
  state(role: number): RoleState {
    return this.states[role]!;
  }
  fail(role: number): void {
    this.states[role] = 'missing';
  }
  async #io<T>(role: number, op: () => Promise<T>): Promise<T> {
    if (this.states[role] === 'missing') throw new Error(`role ${role} is missing`);
    try {
      return await op();
    } catch (err) {
      this.states[role] = 'missing';
      throw err;
    }
  }
  read(role: number, offset: number, length: number): Promise<Buffer> {
    this.reads[role]! += length;
    return this.#io(role, () => this.devices[role]!.read(offset, length));
  }
  readInto(role: number, offset: number, out: Buffer): Promise<void> {
    this.reads[role]! += out.length;
    return this.#io(role, () => readInto(this.devices[role]!, offset, out));
  }
  write(role: number, offset: number, data: Uint8Array, options?: WriteOptions): Promise<void> {
    return this.#io(role, () => this.devices[role]!.write(offset, data, options));
  }
  discard(role: number, offset: number, length: number): Promise<void> {
    return this.#io(role, () => this.devices[role]!.discard(offset, length));
  }
  writeZeroes(role: number, offset: number, length: number, options?: ZeroOptions): Promise<void> {
    return this.#io(role, () => this.devices[role]!.writeZeroes(offset, length, options));
  }
  totalReads(): number {
    return this.reads.reduce((a, b) => a + b, 0);
  }
}

export { tempDir } from '../support/temp-dir.js';

export async function memberFiles(dir: string, n: number, size: number, tag = 'm'): Promise<FileDevice[]> {
  return Promise.all(Array.from({ length: n }, (_, i) => FileDevice.open(join(dir, `${tag}${i}.img`), { create: { size } })));
}

function slowMul(a: number, b: number): number {
  let r = 0;
  for (let i = 0; i < 8; i++) if (b & (1 << i)) r ^= a << i;
  for (let bit = 14; bit >= 8; bit--) if (r & (1 << bit)) r ^= 0x11d << (bit - 8);
  return r;
}

/**
 * Recomputes P (and Q) of every row from the member contents and returns the rows whose parity
 * does not match. Independent of the engine: byte-wise XOR and shift-and-add GF multiplication.
 */
export async function inconsistentRows(devices: Pick<BlockDevice, 'read'>[], layout: ParityLayout, rows: number | number[]): Promise<number[]> {
  const c = layout.chunkSize;
  const bad: number[] = [];
  for (const r of typeof rows === 'number' ? Array.from({ length: rows }, (_, i) => i) : rows) {
    const map = layout.stripe(r);
    const blocks = await Promise.all(devices.map((d) => d.read(r * c, c)));
    const p = new Uint8Array(c);
    const q = new Uint8Array(c);
    map.dataMembers.forEach((m, i) => {
      const g = coefficient(map.qSlot[i]!);
      const b = blocks[m]!;
      for (let k = 0; k < c; k++) {
        p[k]! ^= b[k]!;
        if (layout.level === 6) q[k]! ^= slowMul(g, b[k]!);
      }
    });
    let ok = Buffer.compare(Buffer.from(p), blocks[map.pd]!) === 0;
    if (layout.level === 6) ok &&= Buffer.compare(Buffer.from(q), blocks[map.qd]!) === 0;
    if (!ok) bad.push(r);
  }
  return bad;
}

function coefficient(slot: number): number {
  let g = 1;
  for (let i = 0; i < slot; i++) g = slowMul(g, 2);
  return g;
}

/** A member whose writeNow can be made to decline after writing part of its block, or to fail. */
export class StubbornMember extends FilterDevice {
  /** Decline writeNow at this offset of the file (after writing its first half), once. */
  declineAt: number | undefined;
  /** writeNow at this offset fails with EIO. */
  failAt: number | undefined;
  /** While set, write() waits for it. */
  gate: Promise<void> | undefined;
  writes = 0;
  override async write(offset: number, data: Uint8Array, options?: WriteOptions): Promise<void> {
    this.writes++;
    if (this.gate !== undefined) await this.gate;
    return this.inner.write(offset, data, options);
  }
  override writeNow(offset: number, parts: readonly Uint8Array[]): boolean {
    if (offset === this.failAt) throw new IoError(`injected: writeNow at ${offset} failed`);
    if (offset === this.declineAt) {
      this.declineAt = undefined;
      const all = Buffer.concat(parts);
      return this.inner.writeNow!(offset, [all.subarray(0, all.length / 2)]) && false;
    }
    return this.inner.writeNow!(offset, parts);
  }
}

/**
 * An array over `n` member files in /dev/shm, each a FileDevice behind a StubbornMember, stopped
 * and closed when the test ends; `prepare` runs on the files first (filling them with garbage,
 * say). `areas` read a member's data area directly, for inconsistentRows.
 */
export async function stubbornArray(t: Parameters<typeof tempDir>[0], options: Omit<CreateOptions, 'members'>, n: number, memberBytes: number, prepare?: (paths: string[]) => void) {
  const paths = memberPaths(tempDir(t, `stubborn-${options.name}`, '/dev/shm'), n, memberBytes);
  prepare?.(paths);
  const files = await Promise.all(paths.map((p) => FileDevice.open(p)));
  const devices = files.map((f) => new StubbornMember(f));
  const array = await createArray({ ...options, members: devices.map((device, i) => ({ name: paths[i]!, device })) });
  t.after(async () => {
    await array.stop();
    await Promise.all(files.map((f) => f.close()));
  });
  const areas = files.map((f) => ({ read: (off: number, len: number) => f.read(DATA_OFFSET + off, len) }));
  return { array, files, devices, areas };
}
