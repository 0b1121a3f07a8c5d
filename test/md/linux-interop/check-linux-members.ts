// The other half of the Linux interop suite (scripts/test.d/45-md-linux.sh): arrays created and
// written by Linux md + mdadm in the guest are assembled by llraid here and must read back the
// bytes Linux wrote. Usage: check-linux-members.ts EXPECTED_FILE MEMBER...

import { readFileSync } from 'node:fs';
import { assembleArray } from '../../../src/md/index.js';

const [expectedPath, ...members] = process.argv.slice(2);
if (expectedPath === undefined || members.length === 0) throw new Error('usage: check-linux-members.ts EXPECTED MEMBER...');
const expected = readFileSync(expectedPath);
const { array, report } = await assembleArray({ members, autoSync: false });
try {
  const got = await array.read(0, expected.length);
  const s = array.status();
  if (!got.equals(expected)) throw new Error(`${s.level} "${s.name}": data differs from what Linux wrote`);
  if (report.stale.length > 0 || report.missingRoles.length > 0) throw new Error(`unexpected assembly report ${JSON.stringify(report)}`);
  console.log(`llraid assembled Linux ${s.level} "${s.name}" (${s.raidDisks} members, ${s.size} bytes, events ${s.events}): ${expected.length} bytes match`);
} finally {
  await array.stop();
}
