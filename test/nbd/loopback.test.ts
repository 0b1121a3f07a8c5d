// The loopback-only rule for plain TCP, a server without TLS (src/nbd/loopback.ts): which addresses and
// names count as loopback, and that the server itself refuses the others, not only the CLI.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryDevice } from '../../src/block/memory-device.js';
import { isLoopback } from '../../src/nbd/loopback.js';
import { NbdServer, isNbdError, loopbackAddress } from '../../src/nbd/index.js';

test('127.0.0.0/8, ::1 and their IPv4-mapped and long forms are loopback; every other address is not', () => {
  for (const a of ['127.0.0.1', '127.255.255.254', '::1', '0:0:0:0:0:0:0:1', '::ffff:127.0.0.1']) assert.equal(isLoopback(a), true, a);
  for (const a of ['0.0.0.0', '::', '10.0.0.1', '128.0.0.1', '::ffff:10.0.0.1', 'fe80::1%lo', '::2', 'localhost', '']) assert.equal(isLoopback(a), false, a);
});

test('a name is accepted only when every address it resolves to is loopback, and comes back resolved', async () => {
  assert.match(await loopbackAddress('localhost'), /^(127\.0\.0\.1|::1)$/);
  assert.equal(await loopbackAddress('2130706433'), '127.0.0.1');
  await assert.rejects(loopbackAddress('10.1'), (e) => isNbdError(e, 'NBD_LISTEN') && /found "10\.1", which resolves to 10\.0\.0\.1: /.test(e.message));
});

test('NbdServer refuses to listen on a non-loopback TCP address, and still listens on loopback', async () => {
  const server = new NbdServer({ exports: [{ name: 'x', device: new MemoryDevice(1024 * 1024, { blockSize: 512 }) }] });
  await assert.rejects(server.listen({ host: '0.0.0.0', port: 0 }), (e) =>
    isNbdError(e, 'NBD_LISTEN') && e.message.startsWith('cannot listen on 0.0.0.0:0: expected a loopback address') && e.message.includes('no TLS or authentication'));
  assert.match(await server.listen({ host: '127.0.0.1', port: 0 }), /^127\.0\.0\.1:\d+$/);
  await server.close();
});
