// `?tls-hostname=NAME` on an nbds:// member URI: the cluster's one member service certificate
// names `llraid-member` and no address (every node serves with it), and engines connect by node
// IP. Real processes: `llraid member-serve` on loopback TCP with that certificate, llraid's NBD
// client connecting to 127.0.0.1. With the parameter the certificate is checked against the
// name and the member attaches (and through an engine, `llraid serve` with such URIs, serves);
// without it the check is against the IP and fails with NBD_TLS naming the mismatch.

import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { buildCli } from '../support/cli.js';
import { makeCerts, makeNamedCert, type CertFiles, type TestCerts } from '../support/certs.js';
import { tempDir } from '../support/temp-dir.js';
import { freePort } from '../nbd/client-helpers.js';
import { patternBytes, startServe } from '../nbd/helpers.js';
import { isNbdError, NbdClientDevice } from '../../src/nbd/index.js';

const MiB = 1024 * 1024;

describe('member URIs with tls-hostname, against member-serve whose certificate names only DNS:llraid-member', () => {
  const dir = tempDir({ after }, 'member-tls-hostname');
  let certs: TestCerts;
  let server: CertFiles;
  let port: number;
  let stopService: () => Promise<void>;
  const client = () => ({ cert: certs.node('local').client.cert, key: certs.node('local').client.key, ca: certs.ca.cert });

  before(async () => {
    const cli = await buildCli();
    certs = await makeCerts(dir, { local: '127.0.0.1' });
    server = await makeNamedCert(join(dir, 'member-service'), 'server', ['DNS:llraid-member'], 'serverAuth', certs.ca);
    const disk = join(dir, 'disk');
    const { mkdirSync } = await import('node:fs');
    mkdirSync(disk);
    for (const n of ['a', 'b']) writeFileSync(join(disk, `${n}.img`), Buffer.alloc(32 * MiB));
    port = await freePort();
    const child = spawn(process.execPath, [cli, 'member-serve', '--listen', `127.0.0.1:${port}`, '--tls-cert', server.cert, '--tls-key', server.key, '--tls-ca', certs.ca.cert, disk], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let err = '';
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    const exited = new Promise((r) => child.once('exit', r));
    stopService = async () => {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
    };
    for (const deadline = Date.now() + 20_000; !err.includes('listening'); await new Promise((r) => setTimeout(r, 20))) {
      if (Date.now() > deadline || child.exitCode !== null) throw new Error(`member-serve did not come up: ${err}`);
    }
  });
  after(async () => stopService?.());

  test('by IP with ?tls-hostname=llraid-member: the certificate is checked against the name, and the member attaches', async () => {
    const dev = await NbdClientDevice.connect({ uri: `nbds://127.0.0.1:${port}/file:a.img?tls-hostname=llraid-member`, tls: client(), epoch: 1n });
    try {
      assert.equal(dev.size, 32 * MiB);
      await dev.write(MiB, patternBytes(65536, 7), { fua: true });
      assert.deepEqual(await dev.read(MiB, 65536), patternBytes(65536, 7));
    } finally {
      await dev.close();
    }
  });

  test('by IP without it: NBD_TLS naming the mismatch and the way out', async () => {
    const uri = `nbds://127.0.0.1:${port}/file:a.img`;
    const err = await NbdClientDevice.connect({ uri, tls: client(), epoch: 1n }).then(() => assert.fail('expected NBD_TLS'), (e: unknown) => e as Error);
    assert.ok(isNbdError(err, 'NBD_TLS'), String(err));
    for (const m of [uri, '127.0.0.1', 'DNS:llraid-member', 'tls-hostname=NAME']) assert.ok(err.message.includes(m), `${JSON.stringify(err.message)} mentions ${m}`);
  });

  test('a tls-hostname the certificate does not carry: NBD_TLS naming it', async () => {
    const uri = `nbds://127.0.0.1:${port}/file:a.img?tls-hostname=other-name`;
    const err = await NbdClientDevice.connect({ uri, tls: client(), epoch: 1n }).then(() => assert.fail('expected NBD_TLS'), (e: unknown) => e as Error);
    assert.ok(isNbdError(err, 'NBD_TLS'), String(err));
    assert.match(err.message, /other-name/);
    assert.match(err.message, /checked against tls-hostname other-name/);
  });

  test('llraid create and serve keep the query when they pass member URIs on: an array over both members, served', async () => {
    const cli = await buildCli();
    const uris = ['a', 'b'].map((n) => `nbds://127.0.0.1:${port}/file:${n}.img?tls-hostname=llraid-member`);
    const tlsArgs = ['--tls-cert', certs.node('local').client.cert, '--tls-key', certs.node('local').client.key, '--tls-ca', certs.ca.cert, '--epoch', '2'];
    const { execFile } = await import('node:child_process');
    const { promisify } = await import('node:util');
    await promisify(execFile)(process.execPath, [cli, 'create', '-l', '1', '-N', 'named', '-z', '16M', ...tlsArgs, ...uris]);
    const serve = await startServe(['--socket', join(dir, 'engine.sock'), ...tlsArgs, ...uris]);
    try {
      const assembled = await serve.waitForEvent('assembled');
      assert.equal(assembled.working, 2, 'both members attached by name-checked TLS');
      const vol = await NbdClientDevice.connect({ uri: serve.uri });
      await vol.write(0, patternBytes(4096, 3));
      assert.deepEqual(await vol.read(0, 4096), patternBytes(4096, 3));
      await vol.close();
    } finally {
      assert.equal(await serve.stop(), 0);
    }
  });
});
