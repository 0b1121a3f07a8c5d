// CountingDevice counts what succeeded, and offers an inner device's optional methods (readInto
// and the synchronous fast paths) exactly when the inner device has them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CountingDevice } from '../../src/block/counting-device.js';
import { FileDevice } from '../../src/block/file-device.js';
import { MemoryDevice } from '../../src/block/memory-device.js';
import { tempDir } from '../support/temp-dir.js';

test('a FileDevice\'s fast paths pass through and count only requests the inner device did', async (t) => {
  // On tmpfs: inline writes on a disk filesystem depend on it taking RWF_NOWAIT (ext4 does not).
  const path = join(tempDir(t, 'count', '/dev/shm'), 'f');
  writeFileSync(path, Buffer.alloc(1 << 20));
  for (const inline of [true, false]) {
    const inner = await FileDevice.open(path, { inline });
    const dev = new CountingDevice(inner);
    assert.equal(dev.writeNow!(0, [Buffer.alloc(512, 1), Buffer.alloc(512, 2)]), inline);
    assert.equal(dev.readNow!(0, Buffer.alloc(1024)), inline);
    const n = inline ? 1 : 0;
    assert.deepEqual([dev.counters.writeOps, dev.counters.writeBytes, dev.counters.readOps, dev.counters.readBytes], [n, n * 1024, n, n * 1024]);
    if (inline) assert.throws(() => dev.writeNow!(inner.size, [Buffer.alloc(512)]));
    assert.equal(dev.counters.writeOps, n, 'a failed request is not counted');
    await inner.close();
  }
});

test('over a device without them, readInto and the fast paths are absent', () => {
  const dev = new CountingDevice(new MemoryDevice(1 << 20));
  assert.deepEqual([dev.readInto, dev.readNow, dev.writeNow], [undefined, undefined, undefined]);
});
