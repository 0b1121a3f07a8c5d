// Writes llraid arrays for the Linux interop suite (scripts/test.d/45-md-linux.sh): raid1 over 2
// and raid10 near=2 over 3 member files, bitmap none (Linux 6.1 predates the v6 bitmap), each
// holding a known 4 MiB pattern, stopped cleanly. Usage: make-members.ts DIR

import { truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createArray } from '../../../src/md/index.js';

async function make(dir: string, name: string, level: 1 | 10, n: number): Promise<void> {
  const paths = Array.from({ length: n }, (_, i) => {
    const p = join(dir, `${name}-${i}.img`);
    writeFileSync(p, '');
    truncateSync(p, 64 << 20);
    return p;
  });
  const a = await createArray({ name, level, members: paths, bitmap: 'none', assumeClean: true, chunkSize: 64 * 1024, force: true });
  const data = Buffer.alloc(4 << 20);
  for (let i = 0; i < data.length; i += 4) data.writeUInt32LE(Math.imul(i, 2654435761) >>> 0, i);
  await a.write(0, data, { fua: true });
  await a.stop();
  writeFileSync(join(dir, `${name}.expected`), data);
  writeFileSync(join(dir, `${name}.size`), `${a.size}\n`);
}

const dir = process.argv[2];
if (dir === undefined) throw new Error('usage: make-members.ts DIR');
await make(dir, 'r1', 1, 2);
await make(dir, 'r10', 10, 3);
