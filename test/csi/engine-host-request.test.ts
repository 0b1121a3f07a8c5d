// The engine host's request checks: what a node plugin may ask it to run. A replicated volume's
// engine needs its epoch, TLS files and nbds:// members; anything else stays refused.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseRequest } from '../../src/csi/engine-host.js';

const start = (args: string[]) => JSON.stringify({ op: 'engine.start', volumeId: 'v1', args });

test('a replicated volume\'s serve arguments pass: epoch, TLS files, lease, nbds:// members beside paths', () => {
  const args = [
    '--epoch', '4', '--lease-ms', '15000', '--member-timeout', '10', '--return-interval', '5',
    '--tls-cert', '/tls/tls.crt', '--tls-key', '/tls/tls.key', '--tls-ca', '/tls/ca.crt', '--force',
    '/pool/disk0/llraid-0123-0.img', 'nbds://10.214.0.12:10809/file:llraid-0123-1.img?tls-hostname=llraid-member',
  ];
  assert.deepEqual(parseRequest(start(args)), { op: 'engine.start', volumeId: 'v1', args });
});

test('refused: a relative TLS file, an epoch that is not a number, other URI schemes, options the host sets itself', () => {
  for (const [args, what] of [
    [['--tls-ca', 'ca.crt'], /an absolute path after --tls-ca/],
    [['--epoch', 'x'], /a whole number after --epoch/],
    [['nbd://10.0.0.1/x'], /found "nbd:\/\/10\.0\.0\.1\/x"/],
    [['--socket', '/tmp/s'], /found "--socket"/],
    [['nbds://h:1'], /found "nbds:\/\/h:1"/],
  ] as const) {
    assert.throws(() => parseRequest(start([...args])), (err: Error) => what.test(err.message), JSON.stringify(args));
  }
});
