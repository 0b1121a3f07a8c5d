// FaultDevice power cuts with overlapping writes: a FUA write is durable on its own, so no older
// write that was still volatile may bring back the bytes it replaced, whatever the cut keeps.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FaultDevice, PowerDomain, type CutMode } from '../../src/block/fault-device.js';
import { MemoryDevice } from '../../src/block/memory-device.js';

for (const mode of ['drop', 'keep', 'random'] as CutMode[]) {
  test(`cut mode ${mode}: an older volatile write overlapped by a FUA write never replaces its data`, async () => {
    for (let seed = 1; seed <= 20; seed++) {
      const inner = new MemoryDevice(64 * 1024);
      const power = new PowerDomain({ seed, mode });
      const d = new FaultDevice(inner, power);
      await d.write(0, Buffer.alloc(8192, 0xaa));
      await d.write(4096, Buffer.alloc(1024, 0xbb), { fua: true });
      await power.cut();
      const got = await inner.read(0, 8192);
      assert.deepEqual(got.subarray(4096, 5120), Buffer.alloc(1024, 0xbb), `seed ${seed}: the FUA data was lost`);
      for (let s = 0; s < 8192; s += 512) {
        if (s >= 4096 && s < 5120) continue;
        const v = got[s];
        assert.ok(v === 0 || v === 0xaa, `seed ${seed}: sector ${s / 512} holds ${v}`);
        if (mode === 'drop') assert.equal(v, 0);
        if (mode === 'keep') assert.equal(v, 0xaa);
      }
    }
  });
}
