// The options for members on other nodes are checked before anything is opened: a flag that
// would do nothing (TLS files when every member is a path; --epoch applies to paths too), half of the TLS files, or an epoch that is not a u64 is a usage error (exit 2)
// that names the flag, and no member file is touched.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { runCli } from '../support/cli.js';
import { tempDir } from '../support/temp-dir.js';

test('remote-member options: usage errors that name the flag, before any member is opened', async (t) => {
  const dir = tempDir(t, 'remote-options');
  const [a, b] = [join(dir, 'a.img'), join(dir, 'b.img')];
  const remote = 'nbds://127.0.0.1:1/00000000:00000000:00000000:00000000';
  const cases: Array<[string[], RegExp]> = [
    [['create', '-l', '1', '-N', 'v', '-z', '16M', '--tls-cert', 'c.pem', '--tls-key', 'k.pem', '--tls-ca', 'ca.pem', a, b], /--tls-\* are for members given as nbds:\/\//],
    [['create', '-l', '1', '-N', 'v', '-z', '16M', '--epoch', '18446744073709551616', a, b], /--epoch: expected a whole number from 0 to 18446744073709551615/],
    [['create', '-l', '1', '-N', 'v', '-z', '16M', '--tls-cert', 'c.pem', a, remote], /--tls-cert, --tls-key and --tls-ca go together/],
    [['create', '-l', '1', '-N', 'v', '-z', '16M', '--epoch', '18446744073709551616', a, remote], /--epoch: expected a whole number from 0 to 18446744073709551615/],
    [['serve', '--socket', join(dir, 's.sock'), '--member-timeout', '0', a, remote], /--member-timeout: expected seconds > 0/],
  ];
  for (const [args, message] of cases) {
    const r = await runCli(args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, message);
  }
  // -z makes missing member files only once every argument was accepted.
  assert.equal((await runCli(['examine', a])).code !== 0, true, 'no member file was made');
});
