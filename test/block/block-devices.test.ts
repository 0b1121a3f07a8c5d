import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { FileDevice } from '../../src/block/file-device.js';
import { MemoryDevice } from '../../src/block/memory-device.js';
import { FaultDevice, PowerDomain } from '../../src/block/fault-device.js';
import { isBlockError, type BlockErrorCode } from '../../src/block/errors.js';
import type { BlockDevice } from '../../src/block/block-device.js';
import { tempDir } from '../support/temp-dir.js';

function pattern(len: number, seed: number): Buffer {
  const b = Buffer.alloc(len);
  for (let i = 0; i < len; i++) b[i] = (i * 31 + seed * 7) & 0xff;
  return b;
}

async function rejectsWith(p: Promise<unknown>, code: BlockErrorCode): Promise<void> {
  await assert.rejects(p, (e: unknown) => isBlockError(e, code));
}

async function contract(dev: BlockDevice): Promise<void> {
  const data = pattern(8192, 3);
  await dev.write(4096, data);
  assert.deepEqual(await dev.read(4096, 8192), data);
  await dev.writeZeroes(4096, 4096);
  assert.deepEqual(await dev.read(4096, 4096), Buffer.alloc(4096));
  assert.deepEqual(await dev.read(8192, 4096), data.subarray(4096));
  await dev.flush();
  await rejectsWith(dev.read(dev.size - 512, 1024), 'ERANGE');
  await rejectsWith(dev.write(dev.size, Buffer.alloc(1)), 'ERANGE');
  await rejectsWith(dev.read(-1, 10), 'EINVAL');
  await rejectsWith(dev.read(0.5, 10), 'EINVAL');
}

describe('block devices', () => {
  const dir = tempDir({ after }, 'block');

  it('memory device honours the BlockDevice contract and reports holes', async () => {
    const dev = new MemoryDevice(1 << 20);
    await contract(dev);
    const ext = await dev.extents(0, 1 << 20);
    assert.equal(ext.reduce((s, e) => s + e.length, 0), 1 << 20);
    assert.equal(ext[0]!.hole, false);
    assert.equal(ext[1]!.hole, true);
    await dev.close();
    await rejectsWith(dev.read(0, 1), 'ESHUTDOWN');
  });

  it('file device creates a sparse file and honours the contract, FUA included', async () => {
    const path = join(dir, 'f.img');
    const dev = await FileDevice.open(path, { create: { size: 16 << 20 } });
    assert.equal(dev.size, 16 << 20);
    await contract(dev);
    await dev.write(0, pattern(512, 9), { fua: true });
    assert.deepEqual(await dev.read(0, 512), pattern(512, 9));
    assert.ok((await stat(path)).blocks * 512 < 1 << 20, 'file stays sparse');
    await dev.close();
    await rejectsWith(dev.write(0, Buffer.alloc(1)), 'ESHUTDOWN');
  });

  it('file device zeroes large ranges by punching holes', async () => {
    const path = join(dir, 'z.img');
    const dev = await FileDevice.open(path, { create: { size: 8 << 20 } });
    await dev.write(0, pattern(4 << 20, 1));
    await dev.writeZeroes(1 << 20, 2 << 20);
    assert.deepEqual(await dev.read(1 << 20, 2 << 20), Buffer.alloc(2 << 20));
    assert.deepEqual(await dev.read(0, 1 << 20), pattern(4 << 20, 1).subarray(0, 1 << 20));
    await dev.close();
  });

  it('read-only file device refuses writes', async () => {
    const path = join(dir, 'ro.img');
    await (await FileDevice.open(path, { create: { size: 1 << 20 } })).close();
    const dev = await FileDevice.open(path, { readOnly: true });
    await rejectsWith(dev.write(0, Buffer.alloc(512)), 'EROFS');
    await dev.close();
  });

  it('missing file is a clear error', async () => {
    await rejectsWith(FileDevice.open(join(dir, 'nope.img')), 'EINVAL');
  });

  it('fault device fails chosen ranges, a limited number of times', async () => {
    const dev = new FaultDevice(new MemoryDevice(1 << 20));
    dev.failWrites(4096, 512, 1);
    await rejectsWith(dev.write(4000, Buffer.alloc(200)), 'EIO');
    await dev.write(4000, Buffer.alloc(200));
    dev.failReads(0, 1 << 20);
    await rejectsWith(dev.read(100, 1), 'EIO');
    dev.clearFaults();
    await dev.read(100, 1);
  });

  it('power cut drops writes that were not flushed and keeps durable ones', async () => {
    const power = new PowerDomain({ mode: 'drop' });
    const mem = new MemoryDevice(1 << 20);
    const dev = new FaultDevice(mem, power);
    await dev.write(0, pattern(512, 1));
    await dev.flush();
    await dev.write(512, pattern(512, 2), { fua: true });
    await dev.write(1024, pattern(512, 3));
    await dev.write(0, pattern(512, 4)); // overwrites durable data, not yet durable itself
    await power.cut();
    await rejectsWith(dev.read(0, 1), 'ESHUTDOWN');
    assert.deepEqual(await mem.read(0, 512), pattern(512, 1));
    assert.deepEqual(await mem.read(512, 512), pattern(512, 2));
    assert.deepEqual(await mem.read(1024, 512), Buffer.alloc(512));
  });

  it('a power cut armed on the n-th write cuts every device of the domain', async () => {
    const power = new PowerDomain({ mode: 'keep' });
    const a = new FaultDevice(new MemoryDevice(1 << 16), power, 'a');
    const b = new FaultDevice(new MemoryDevice(1 << 16), power, 'b');
    power.cutAfterWrites(2);
    await a.write(0, Buffer.alloc(512, 1));
    await b.write(0, Buffer.alloc(512, 2));
    await rejectsWith(a.write(512, Buffer.alloc(512, 3)), 'ESHUTDOWN');
    assert.ok(power.isCut);
    await rejectsWith(b.write(0, Buffer.alloc(1)), 'ESHUTDOWN');
    // 'keep': the unacknowledged write still reached the medium
    assert.deepEqual(await a.inner.read(512, 512), Buffer.alloc(512, 3));
  });

  it('random cuts tear writes only at sector boundaries', async () => {
    for (let seed = 1; seed <= 20; seed++) {
      const power = new PowerDomain({ seed, mode: 'random' });
      const mem = new MemoryDevice(1 << 16);
      const dev = new FaultDevice(mem, power);
      await dev.write(0, Buffer.alloc(4096, 0xaa));
      await power.cut();
      const got = await mem.read(0, 4096);
      for (let s = 0; s < 4096; s += 512) {
        const sector = got.subarray(s, s + 512);
        assert.ok(sector.every((x) => x === 0) || sector.every((x) => x === 0xaa), `seed ${seed}: sector ${s} mixed`);
      }
    }
  });
});

describe('O_DIRECT file device', () => {
  it('reads and writes through aligned bounce buffers, and refuses misaligned requests', async (t) => {
    // /var/tmp is on a disk filesystem here (tmpfs may refuse O_DIRECT, which is a clear ENOTSUP)
    const dir = tempDir(t, 'direct', '/var/tmp');
    const path = join(dir, 'd.img');
    await (await FileDevice.open(path, { create: { size: 8 << 20 } })).close();
    const dev = await FileDevice.open(path, { direct: true });
    assert.equal(dev.blockSize, 4096);
    const data = pattern(3 << 20, 5);
    await dev.write(4096, data);
    await dev.write(0, pattern(4096, 6), { fua: true });
    assert.deepEqual(await dev.read(4096, 3 << 20), data);
    assert.deepEqual(await dev.read(0, 4096), pattern(4096, 6));
    await rejectsWith(dev.read(100, 4096), 'EINVAL');
    await Promise.all(Array.from({ length: 12 }, (_, i) => dev.write(i * 65536, pattern(65536, i))));
    for (let i = 0; i < 12; i++) assert.deepEqual(await dev.read(i * 65536, 65536), pattern(65536, i));
    await dev.close();
  });
});
