// The NBD client over STARTTLS (TLS 1.3, mutual certificates) against nbdkit --tls=require
// --tls-verify-peer on loopback TCP, with certificates openssl makes here: I/O works with the
// right ones; plain TCP, a client certificate from another CA and a server certificate from
// another CA are each refused with NBD_TLS naming the URI. And the client against llraid's own
// server over TLS, with small and large requests in flight at once.

import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { isNbdError, NbdClientDevice, NbdServer } from '../../src/nbd/index.js';
import { MemoryDevice } from '../../src/block/memory-device.js';
import { makeCerts, type TestCerts } from '../support/certs.js';
import { tempDir } from '../support/temp-dir.js';
import { freePort, randomIoAgainstShadow, startNbdkit, type ServerProcess } from './client-helpers.js';

async function rejectsTls(p: Promise<unknown>, ...mentions: string[]): Promise<void> {
  const err = await p.then(() => assert.fail('expected NBD_TLS'), (e: unknown) => e as Error);
  assert.ok(isNbdError(err, 'NBD_TLS'), `expected NBD_TLS, found ${String(err)}`);
  for (const m of mentions) assert.ok(err.message.includes(m), `${JSON.stringify(err.message)} mentions ${m}`);
}

describe('NBD client over TLS with nbdkit --tls=require --tls-verify-peer', () => {
  const dir = tempDir({ after }, 'nbd-client-tls');
  let certs: TestCerts;
  let server: ServerProcess;
  let port: number;
  /** The client's files: signed by the CA and trusting it ('good'), or all from the rogue CA. */
  const files = (who: 'good' | 'rogue') => who === 'good'
    ? { cert: certs.node('local').client.cert, key: certs.node('local').client.key, ca: certs.ca.cert }
    : { cert: certs.rogue.client.cert, key: certs.rogue.client.key, ca: certs.rogue.ca.cert };

  before(async () => {
    certs = await makeCerts(dir, { local: '127.0.0.1' });
    port = await freePort();
    server = await startNbdkit(dir, port, ['--tls=require', `--tls-certificates=${certs.node('local').dir}`, '--tls-verify-peer', 'memory', '32M']);
  });
  after(async () => server?.stop());

  test('with the right certificates: random I/O matches a shadow copy', async () => {
    const dev = await NbdClientDevice.connect({ uri: `nbds://127.0.0.1:${port}/`, tls: files('good') });
    try {
      assert.equal(dev.size, 32 * 1024 * 1024);
      await randomIoAgainstShadow(dev, { rounds: 6, perRound: 200, maxBlocks: 32, seed: 11 });
      const big = Buffer.alloc(8 * 1024 * 1024, 0x3c);
      await dev.write(0, big, { fua: true });
      assert.ok((await dev.read(0, big.length)).equals(big));
    } finally {
      await dev.close();
    }
  });

  test('PEM contents work as well as file paths, and localhost as the host name', async () => {
    const f = files('good');
    const pem = { cert: readFileSync(f.cert, 'utf8'), key: readFileSync(f.key, 'utf8'), ca: readFileSync(f.ca, 'utf8') };
    const dev = await NbdClientDevice.connect({ uri: `nbds://localhost:${port}/`, tls: pem });
    await dev.flush();
    await dev.close();
  });

  test('plain TCP to a server that requires TLS: NBD_TLS "requires TLS"', async () => {
    const uri = `nbd://127.0.0.1:${port}/`;
    await rejectsTls(NbdClientDevice.connect({ uri }), uri, 'requires TLS');
  });

  test('a client certificate from another CA: refused, NBD_TLS', async () => {
    const uri = `nbds://127.0.0.1:${port}/`;
    await rejectsTls(NbdClientDevice.connect({ uri, tls: { ...files('rogue'), ca: certs.ca.cert } }), uri);
  });

  test('a server certificate from another CA: the client refuses it, NBD_TLS', async () => {
    const uri = `nbds://127.0.0.1:${port}/`;
    await rejectsTls(NbdClientDevice.connect({ uri, tls: files('rogue') }), uri, 'certificate');
  });
});

describe('NBD client asking TLS of a server without it', () => {
  const dir = tempDir({ after }, 'nbd-client-notls');
  let server: ServerProcess;
  let port: number;
  let certs: TestCerts;
  before(async () => {
    certs = await makeCerts(dir, { local: '127.0.0.1' });
    port = await freePort();
    server = await startNbdkit(dir, port, ['--tls=off', 'memory', '1M']);
  });
  after(async () => server?.stop());

  test('STARTTLS refused: NBD_TLS, and the client does not go on in plain', async () => {
    const uri = `nbds://127.0.0.1:${port}/`;
    await rejectsTls(NbdClientDevice.connect({ uri, tls: { cert: certs.node('local').client.cert, key: certs.node('local').client.key, ca: certs.ca.cert } }), uri, 'refused TLS', 'not going on in plain');
  });
});

describe("NBD client over TLS with llraid's own server", () => {
  const dir = tempDir({ after }, 'nbd-client-tls-own');
  let server: NbdServer;
  let port: number;
  let certs: TestCerts;
  before(async () => {
    certs = await makeCerts(dir, { local: '127.0.0.1' });
    const c = certs.node('local');
    server = new NbdServer({
      exports: [{ name: 'x', device: new MemoryDevice(64 * 1024 * 1024) }],
      tls: { cert: readFileSync(c.server.cert, 'utf8'), key: readFileSync(c.server.key, 'utf8'), ca: readFileSync(certs.ca.cert, 'utf8') },
    });
    const at = await server.listen({ host: '127.0.0.1', port: 0 });
    port = Number(at.slice(at.lastIndexOf(':') + 1));
  });
  after(async () => server?.close());

  test('small and large requests at once, in both directions, match a shadow copy', async () => {
    const c = certs.node('local');
    const dev = await NbdClientDevice.connect({ uri: `nbds://127.0.0.1:${port}/x`, tls: { cert: c.client.cert, key: c.client.key, ca: certs.ca.cert } });
    try {
      // Up to 512 blocks of 512 bytes: requests from 512 bytes to 256 KiB, many in one turn, so
      // that small and large WRITE payloads and READ replies share corked writes on both ends.
      await randomIoAgainstShadow(dev, { rounds: 4, perRound: 120, maxBlocks: 512, seed: 23 });
      // A write split into several requests (parts not on 16 KiB TLS record boundaries).
      const big = Buffer.alloc(5 * 1024 * 1024 + 4096);
      for (let i = 0; i < big.length; i += 4) big.writeUInt32LE((i * 2654435761) >>> 0, i);
      const parts = [big.subarray(0, 1000 * 512), big.subarray(1000 * 512, 1001 * 512), big.subarray(1001 * 512)];
      await Promise.all([dev.writev(512, parts), dev.write(0, Buffer.alloc(512, 7))]);
      assert.ok((await dev.read(512, big.length)).equals(big));
      assert.ok((await dev.read(0, 512)).equals(Buffer.alloc(512, 7)));
    } finally {
      await dev.close();
    }
  });
});
