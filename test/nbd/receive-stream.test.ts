// The server's receive path on a real socket (socket-receiver.ts, the connection's ring and its
// pooled payloads): random streams of WRITEs of every size from 512 bytes to 384 KiB (small ones
// copied out of the ring, large ones landing in their own buffers), READs and FLUSHes, sent in
// random pieces, against a device that completes writes late and out of order while the
// connection's in-flight limit keeps pausing reading (so requests wait in the ring and a full ring
// is replaced). Every READ must return what the writes before it (in the stream, all answered)
// put there, and the device must end as the model says.

import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import fc from 'fast-check';
import type { WriteOptions } from '../../src/block/block-device.js';
import { FilterDevice } from '../../src/block/filter-device.js';
import { MemoryDevice } from '../../src/block/memory-device.js';
import { NbdServer } from '../../src/nbd/index.js';
import { tempDir } from '../support/temp-dir.js';
import { RawPeer, request } from './raw-client.js';

const SIZE = 4 * 1024 * 1024;
const SECTOR = 512;

/** Completes each write after a random number of event-loop turns, so writes settle out of order. */
class LateDevice extends FilterDevice {
  constructor(private readonly delays: () => number) {
    super(new MemoryDevice(SIZE, { blockSize: SECTOR }));
  }
  override async write(offset: number, data: Uint8Array, options?: WriteOptions): Promise<void> {
    for (let i = this.delays(); i > 0; i--) await new Promise((r) => setImmediate(r));
    return super.write(offset, data, options);
  }
}

type Op = { kind: 'write'; offset: number; length: number; seed: number } | { kind: 'read'; offset: number; length: number } | { kind: 'flush' };

const arbOp: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('write' as const), at: fc.nat(SIZE / SECTOR - 1), sectors: fc.oneof(fc.integer({ min: 1, max: 16 }), fc.integer({ min: 60, max: 768 })), seed: fc.nat(255) })
    .map(({ at, sectors, seed }) => ({ kind: 'write' as const, offset: Math.min(at, SIZE / SECTOR - sectors) * SECTOR, length: sectors * SECTOR, seed })) },
  { weight: 2, arbitrary: fc.record({ at: fc.nat(SIZE / SECTOR - 1), sectors: fc.integer({ min: 1, max: 256 }) })
    .map(({ at, sectors }) => ({ kind: 'read' as const, offset: Math.min(at, SIZE / SECTOR - sectors) * SECTOR, length: sectors * SECTOR })) },
  { weight: 1, arbitrary: fc.constant({ kind: 'flush' as const }) },
);

function bytes(length: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(length);
  for (let i = 0; i < length; i++) b[i] = (seed * 31 + i * 7 + (i >> 9)) & 0xff;
  return b;
}

test('random request streams in random pieces: every READ sees the writes before it, the device ends as the model', { timeout: 120_000 }, async (t: TestContext) => {
  const dir = tempDir(t, 'nbd-receive');
  let run = 0;
  await fc.assert(
    fc.asyncProperty(fc.array(arbOp, { minLength: 1, maxLength: 40 }), fc.array(fc.integer({ min: 1, max: 200_000 }), { minLength: 1, maxLength: 20 }), fc.array(fc.nat(6), { minLength: 1 }), async (ops, cuts, delays) => {
      const sock = join(dir, `s${run++}.sock`);
      let d = 0;
      const device = new LateDevice(() => delays[d++ % delays.length]!);
      const server = new NbdServer({ exports: [{ name: 'x', device }], limits: { maxInFlight: 3 } });
      await server.listen({ socket: sock });
      try {
        const p = await RawPeer.connect(sock);
        await p.go('x');
        const model = Buffer.alloc(SIZE);
        // Every op is sent after the replies of the ops before its last READ, so a READ's expected
        // bytes are the model's at the time it was sent: ops between two READs run concurrently
        // and only touch the model once answered; a READ is sent alone after them.
        let i = 0;
        while (i < ops.length) {
          const batch: Op[] = [];
          // Writes of one batch run concurrently and complete in any order: one that overlaps an
          // earlier one of its batch is left out, so the model is exact.
          for (; i < ops.length && ops[i]!.kind !== 'read'; i++) if (!overlapping([...batch, ops[i]!])) batch.push(ops[i]!);
          const read = i < ops.length ? ops[i++]! : undefined;
          const wire = Buffer.concat(batch.map((op, k) => op.kind === 'write'
            ? Buffer.concat([request(1, BigInt(k), op.offset, op.length), bytes(op.length, op.seed)])
            : request(3, BigInt(k), 0, 0)));
          let at = 0;
          for (let c = 0; at < wire.length; c++) {
            const n = cuts[c % cuts.length]!;
            p.send(wire.subarray(at, at + n));
            at += n;
            if (c % 3 === 2) await new Promise((r) => setImmediate(r));
          }
          for (let k = 0; k < batch.length; k++) assert.equal((await p.simpleReply()).error, 0);
          for (const op of batch) if (op.kind === 'write') bytes(op.length, op.seed).copy(model, op.offset);
          if (read?.kind === 'read') {
            p.send(request(0, 99n, read.offset, read.length));
            assert.deepEqual(await p.simpleReply(), { error: 0, cookie: 99n });
            const got = await p.read(read.length);
            assert.ok(got.equals(model.subarray(read.offset, read.offset + read.length)), 'a READ returns what the writes before it put there');
          }
        }
        p.socket.destroy();
        assert.ok((await device.inner.read(0, SIZE)).equals(model), 'the device ends as the model says');
      } finally {
        await server.close();
      }
    }),
    { numRuns: 100 },
  );
});

/** Whether two WRITEs of `ops` touch a common byte. */
function overlapping(ops: Op[]): boolean {
  const writes = ops.filter((o): o is Extract<Op, { kind: 'write' }> => o.kind === 'write').sort((a, b) => a.offset - b.offset);
  return writes.some((w, k) => k > 0 && writes[k - 1]!.offset + writes[k - 1]!.length > w.offset);
}

test('a long stream of small WRITEs on one connection, paused again and again: rings taken in turn, every byte where it was sent', { timeout: 60_000 }, async (t: TestContext) => {
  // 8 KiB payloads are copied out of the ring (below DIRECT_PAYLOAD); with three requests in
  // flight and writes completing late, reading pauses with the ring full of requests over and
  // over, and the connection goes on reading into its other ring each time (connection.ts
  // nextTarget): 4 MiB in one go is 16 rings' worth.
  const dir = tempDir(t, 'nbd-receive-rings');
  let d = 0;
  const device = new LateDevice(() => [0, 3, 1, 6, 2][d++ % 5]!);
  const server = new NbdServer({ exports: [{ name: 'x', device }], limits: { maxInFlight: 3 } });
  await server.listen({ socket: join(dir, 's.sock') });
  try {
    const p = await RawPeer.connect(join(dir, 's.sock'));
    await p.go('x');
    const model = Buffer.alloc(SIZE);
    const length = 8 * 1024;
    const writes = Array.from({ length: SIZE / length }, (_, k) => ({ offset: ((k * 7) % (SIZE / length)) * length, seed: k & 0xff }));
    for (const [k, w] of writes.entries()) {
      p.send(Buffer.concat([request(1, BigInt(k), w.offset, length), bytes(length, w.seed)]));
      bytes(length, w.seed).copy(model, w.offset);
    }
    for (let k = 0; k < writes.length; k++) assert.equal((await p.simpleReply()).error, 0);
    p.socket.destroy();
    assert.ok((await device.inner.read(0, SIZE)).equals(model), 'every write landed where it was sent, with its bytes');
  } finally {
    await server.close();
  }
});
