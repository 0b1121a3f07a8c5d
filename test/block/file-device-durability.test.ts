// How a FileDevice makes a write durable depends on where its file lives: on a disk, FUA goes
// through a second, O_DSYNC descriptor (and flush is fdatasync); on tmpfs, where the page cache is
// the storage and both would do nothing, a FUA write is a plain write on the one descriptor and a
// flush has nothing to wait for. Checked through /proc: the descriptors this process holds on the
// file and their flags.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { FileDevice } from '../../src/block/file-device.js';

const O_DSYNC = 0o10000;

/** open(2) flags of each descriptor of this process that names `path`. */
function descriptorFlags(path: string): number[] {
  const flags: number[] = [];
  for (const fd of readdirSync('/proc/self/fd')) {
    let target: string;
    try {
      target = readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      continue; // closed meanwhile (readdir's own descriptor)
    }
    if (target !== path) continue;
    const line = readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8').split('\n').find((l) => l.startsWith('flags:'));
    flags.push(parseInt(line!.split(/\s+/)[1]!, 8));
  }
  return flags;
}

for (const [where, dir, inMemory] of [['tmpfs (/dev/shm)', '/dev/shm', true], ['a disk (/var/tmp)', '/var/tmp', false]] as const) {
  test(`a FUA write and a flush on ${where}: ${inMemory ? 'no O_DSYNC descriptor, nothing more than the write' : 'through an O_DSYNC descriptor'}, and the bytes are there`, async (t) => {
    const tmp = mkdtempSync(join(dir, 'llraid-durability-'));
    t.after(() => rmSync(tmp, { recursive: true, force: true }));
    const path = join(tmp, 'member.img');
    const d = await FileDevice.open(path, { create: { size: 1 << 20 } });
    try {
      await d.write(4096, Buffer.alloc(4096, 0x5a), { fua: true });
      await d.writev(8192, [Buffer.alloc(512, 1), Buffer.alloc(512, 2)], { fua: true });
      await d.flush();
      const fds = descriptorFlags(path);
      if (inMemory) assert.deepEqual(fds.map((f) => f & O_DSYNC), [0], 'one descriptor, without O_DSYNC');
      else assert.deepEqual(fds.map((f) => f & O_DSYNC).sort(), [0, O_DSYNC], 'the plain descriptor and the O_DSYNC one');
      assert.deepEqual(await d.read(4096, 4096), Buffer.alloc(4096, 0x5a));
      assert.deepEqual(await d.read(8192, 1024), Buffer.concat([Buffer.alloc(512, 1), Buffer.alloc(512, 2)]));
    } finally {
      await d.close();
    }
    await assert.rejects(d.flush(), /closed/, 'a closed device still refuses a flush');
  });
}
