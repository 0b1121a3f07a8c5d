// The lease gate alone, on virtual time over a memory device: writes, flushes, discards and
// zeroings are answered only before the deadline; past it they are held (not failed) and reach
// the device only once the lease is extended, in the order they came; a request already running
// at the deadline is done on the device but answered only after the extension; shut fails what is
// held with EIO without it ever reaching the device. Reads are never held. The lapse is reported
// at the deadline even without a request. (The engine with it, over real processes:
// lease.test.ts.)

import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import type { WriteOptions } from '../../src/block/block-device.js';
import { FencedError, isBlockError, ShutdownError } from '../../src/block/errors.js';
import { FilterDevice } from '../../src/block/filter-device.js';
import { MemoryDevice } from '../../src/block/memory-device.js';
import { LeaseGate, type LeaseChange } from '../../src/engine/lease-gate.js';
import { settle, settlesWithoutTime, VirtualClock } from '../support/virtual-clock.js';

const block = (byte: number): Buffer => Buffer.alloc(4096, byte);

function gateOver(t: TestContext, leaseMs: number) {
  const clock = new VirtualClock(t);
  const device = new MemoryDevice(1 << 20);
  const changes: LeaseChange[] = [];
  const gate = new LeaseGate(device, { leaseMs, onChange: (e) => changes.push(e) });
  return { clock, device, gate, changes };
}

test('within the lease writes are answered; past it they are held, reads are not, and the extension runs them in order', async (t) => {
  const { clock, device, gate, changes } = gateOver(t, 1000);
  await gate.write(0, block(1));
  assert.deepEqual(await device.read(0, 4096), block(1));

  await clock.advance(999);
  assert.deepEqual(changes, [], 'not before the deadline');
  await clock.advance(2);
  assert.deepEqual(changes, [{ type: 'lease-lapsed' }], 'the lapse is reported at the deadline (within a ms), with no request');
  const first = gate.write(0, block(2));
  const second = gate.write(0, block(3));
  const flush = gate.flush();
  const zero = gate.writeZeroes(8192, 4096);
  const trim = gate.discard(16384, 4096);
  await clock.advance(60_000);
  for (const p of [first, second, flush, zero, trim]) assert.equal(await settlesWithoutTime(p), false, 'held, not failed');
  assert.deepEqual(await gate.read(0, 4096), block(1), 'reads go on, and see none of the held writes');
  assert.deepEqual(await device.read(0, 4096), block(1), 'nothing held reached the device');
  assert.deepEqual(gate.status(), { validForMs: 0, held: 5, heldBytes: 8192 });

  const after = gate.extend(5000);
  await Promise.all([first, second, flush, zero, trim]);
  assert.deepEqual(await device.read(0, 4096), block(3), 'the held writes ran in the order they came');
  assert.deepEqual(after, { validForMs: 5000, held: 0, heldBytes: 0 });
  assert.deepEqual(changes[1], { type: 'lease-renewed', released: 5, lapsedMs: 60_001, validForMs: 5000 });
  await gate.write(4096, block(4));
  assert.equal(changes.length, 2, 'extensions within the lease report nothing');
  gate.extend(5000);
  assert.equal(changes.length, 2);
});

/** A device whose writes finish only when the test lets them: a member answering slowly. */
class SlowWrites extends FilterDevice {
  readonly waiting: Array<() => void> = [];
  override async write(offset: number, data: Uint8Array, options?: WriteOptions): Promise<void> {
    await new Promise<void>((resolve) => this.waiting.push(resolve));
    return super.write(offset, data, options);
  }
}

test('a write running when the deadline passes is done on the device but answered only after the extension', async (t) => {
  const clock = new VirtualClock(t);
  const memory = new MemoryDevice(1 << 20);
  const slow = new SlowWrites(memory);
  const changes: LeaseChange[] = [];
  const gate = new LeaseGate(slow, { leaseMs: 1000, onChange: (e) => changes.push(e) });
  const write = gate.write(0, block(5));
  await settle();
  await clock.advance(2000);
  slow.waiting.shift()!();
  await settle();
  assert.deepEqual(await memory.read(0, 4096), block(5), 'the member has it');
  assert.equal(await settlesWithoutTime(write), false, 'but it is not acknowledged past the deadline');
  assert.equal(gate.status().held, 1);
  gate.extend(1000);
  await write;
  assert.equal(changes.filter((c) => c.type === 'lease-renewed').length, 1);
});

test('lapsed by a lease of 0 ms, then shut: held requests fail with EIO and never reach the device; later ones fail at once', async (t) => {
  const { device, gate, changes } = gateOver(t, 60_000);
  gate.extend(0);
  assert.deepEqual(changes, [{ type: 'lease-lapsed' }], 'a lease of 0 lapses at once');
  const held = gate.write(0, block(9));
  const flush = gate.flush();
  assert.equal(await settlesWithoutTime(held), false);
  gate.shut(new FencedError('the array is fenced (member b taken with epoch 4)'));
  for (const p of [held, flush]) {
    await assert.rejects(p, (err: unknown) => isBlockError(err, 'EIO') && /held while the engine's lease had lapsed.*fenced/.test((err as Error).message));
  }
  await assert.rejects(gate.write(0, block(9)), (err: unknown) => isBlockError(err, 'EIO'));
  assert.throws(() => gate.extend(1000), (err: unknown) => isBlockError(err, 'EFENCED'), 'no extension after a fence');
  assert.deepEqual(await device.read(0, 4096), block(0), 'the device never saw the held write');
  assert.deepEqual(await gate.read(0, 4096), block(0), 'reads still pass');
});

test('shut while the lease is valid: what runs is answered, what comes later fails', async (t) => {
  const clock = new VirtualClock(t);
  const memory = new MemoryDevice(1 << 20);
  const slow = new SlowWrites(memory);
  const gate = new LeaseGate(slow, { leaseMs: 10_000, onChange: () => undefined });
  const running = gate.write(0, block(6));
  await settle();
  gate.shut(new ShutdownError('the engine is stopping (SIGTERM)'));
  slow.waiting.shift()!();
  await running;
  await assert.rejects(gate.write(0, block(7)), /not acknowledged: the engine is stopping/);
  await clock.advance(1);
});

test('a lease out of range is refused with EINVAL', (t) => {
  const { gate } = gateOver(t, 1000);
  for (const bad of [-1, 1.5, Number.NaN, 86_400_001]) assert.throws(() => gate.extend(bad), (err: unknown) => isBlockError(err, 'EINVAL'));
  assert.throws(() => new LeaseGate(new MemoryDevice(4096), { leaseMs: -5, onChange: () => undefined }), (err: unknown) => isBlockError(err, 'EINVAL'));
});
