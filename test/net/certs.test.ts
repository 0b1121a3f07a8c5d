// The test certificates of test/support/certs.ts: each verifies against its CA with the node's
// address in its names; TLS 1.3 with mutual certificates works with them and refuses the rogue
// CA's, in Node on loopback and between two namespaces; libnbd and nbdkit accept their layouts.

import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import { promisify } from 'node:util';
import { makeCerts, type CertFiles, type TestCerts } from '../support/certs.js';
import { Netns } from '../support/netns.js';
import { tempDir } from '../support/temp-dir.js';

const execFileP = promisify(execFile);
const SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';

async function verify(ca: string, cert: string): Promise<string> {
  try {
    const { stdout } = await execFileP('openssl', ['verify', '-CAfile', ca, cert]);
    return stdout.trim();
  } catch (err) {
    return `failed: ${(err as { stdout?: string; stderr?: string }).stdout ?? ''}${(err as { stderr?: string }).stderr ?? ''}`;
  }
}

interface TlsServer {
  port: number;
  /** CNs of the clients whose certificates were accepted. */
  accepted: string[];
  /** Handshakes the server refused. */
  refused: Error[];
  close(): Promise<void>;
}

/** A TLS 1.3 echo server with mutual certificates (the plan's member-service settings) on loopback. */
async function tlsEchoServer(server: CertFiles, ca: string): Promise<TlsServer> {
  const accepted: string[] = [];
  const refused: Error[] = [];
  const srv = tls.createServer(
    { cert: readFileSync(server.cert), key: readFileSync(server.key), ca: readFileSync(ca), requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.3' },
    (s) => {
      accepted.push(String(s.getPeerCertificate().subject.CN));
      s.pipe(s);
    },
  );
  srv.on('tlsClientError', (err) => refused.push(err));
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  return {
    port: (srv.address() as AddressInfo).port,
    accepted,
    refused,
    close: () => new Promise((resolve) => srv.close(() => resolve())),
  };
}

/** Connects with `client`'s certificate, trusting `ca`, sends a line and waits for the echo:
 * 'echoed TLSv1.3' or the error that ended it. Bounded at 5 s. */
function tlsExchange(port: number, client: CertFiles, ca: string): Promise<string> {
  return new Promise((resolve) => {
    const s = tls.connect({ host: '127.0.0.1', port, cert: readFileSync(client.cert), key: readFileSync(client.key), ca: readFileSync(ca), minVersion: 'TLSv1.3' });
    const timer = setTimeout(() => finish('timeout'), 5000);
    let got = '';
    const finish = (outcome: string): void => {
      clearTimeout(timer);
      s.destroy();
      resolve(outcome);
    };
    s.once('secureConnect', () => s.write('ping\n'));
    s.on('data', (d: Buffer) => {
      got += d.toString();
      if (got === 'ping\n') finish(`echoed ${s.getProtocol()}`);
    });
    s.once('error', (err: NodeJS.ErrnoException) => finish(`error ${err.code ?? err.message}`));
    s.once('close', () => finish('closed'));
  });
}

describe('test certificates', () => {
  let certs: TestCerts;
  const cleanup: (() => void)[] = [];
  before(async () => {
    certs = await makeCerts(tempDir({ after: (fn) => cleanup.push(fn) }, 'certs'), { a: '10.213.0.1', b: '10.213.0.2', c: '10.213.0.3' });
  });
  after(() => cleanup.forEach((fn) => fn()));

  test('every node certificate verifies against the CA; the rogue ones do not', async () => {
    for (const n of Object.values(certs.nodes)) {
      assert.equal(await verify(certs.ca.cert, n.server.cert), `${n.server.cert}: OK`);
      assert.equal(await verify(certs.ca.cert, n.client.cert), `${n.client.cert}: OK`);
      assert.equal(await verify(n.ca, n.client.cert), `${n.client.cert}: OK`);
    }
    assert.match(await verify(certs.ca.cert, certs.rogue.client.cert), /^failed: .*unable to get local issuer certificate/s);
    assert.match(await verify(certs.ca.cert, certs.rogue.server.cert), /^failed: /);
    assert.equal(await verify(certs.rogue.ca.cert, certs.rogue.client.cert), `${certs.rogue.client.cert}: OK`);
  });

  test('a certificate names its node address, 127.0.0.1 and localhost, with an EC P-256 key', () => {
    const ca = new X509Certificate(readFileSync(certs.ca.cert));
    assert.ok(ca.ca);
    for (const n of Object.values(certs.nodes)) {
      for (const [files, usage] of [[n.server, SERVER_AUTH], [n.client, CLIENT_AUTH]] as const) {
        const x = new X509Certificate(readFileSync(files.cert));
        assert.equal(x.subjectAltName, `IP Address:${n.addr}, IP Address:127.0.0.1, DNS:localhost`);
        assert.equal(x.checkIP(n.addr), n.addr);
        assert.deepEqual(x.keyUsage, [usage]); // Node's keyUsage is the extended key usage
        assert.equal(x.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
        assert.ok(x.verify(ca.publicKey));
        assert.ok(x.checkIssued(ca));
        assert.ok(!x.ca);
      }
    }
    assert.throws(() => certs.node('z'), /no node "z"/);
  });

  test('the libnbd and nbdkit layouts hold the right files', () => {
    const b = certs.node('b');
    const same = (x: string, y: string): void => assert.equal(readFileSync(x, 'utf8'), readFileSync(y, 'utf8'));
    same(`${b.dir}/ca-cert.pem`, certs.ca.cert);
    same(`${b.dir}/client-cert.pem`, b.client.cert);
    same(`${b.dir}/client-key.pem`, b.client.key);
    same(`${b.dir}/server-cert.pem`, b.server.cert);
    same(`${b.dir}/server-key.pem`, b.server.key);
    same(`${certs.rogue.clientDir}/ca-cert.pem`, certs.ca.cert);
    same(`${certs.rogue.clientDir}/client-cert.pem`, certs.rogue.client.cert);
    same(`${certs.rogue.serverDir}/server-cert.pem`, certs.rogue.server.cert);
  });

  test('TLS 1.3 with mutual certificates: a node client is accepted, the rogue CA client is refused', async () => {
    const server = await tlsEchoServer(certs.node('a').server, certs.ca.cert);
    try {
      assert.equal(await tlsExchange(server.port, certs.node('b').client, certs.ca.cert), 'echoed TLSv1.3');
      assert.deepEqual(server.accepted, ['b engine']);

      const rogue = await tlsExchange(server.port, certs.rogue.client, certs.ca.cert);
      assert.match(rogue, /^(error|closed)/, `the rogue client got: ${rogue}`);
      assert.notEqual(rogue, 'echoed TLSv1.3');
      assert.deepEqual(server.accepted, ['b engine'], 'the server accepted no other client');
      // Node's server refuses during the handshake but reports it only as a reset ("socket hang
      // up"), and the client sees its connection closed after secureConnect, no alert text.
      assert.equal(server.refused.length, 1, `refused: ${server.refused.join('; ')}`);

      // A server certificate from the rogue CA is refused by the client.
      const rogueServer = await tlsEchoServer(certs.rogue.server, certs.ca.cert);
      try {
        assert.match(await tlsExchange(rogueServer.port, certs.node('b').client, certs.ca.cert), /^error (UNABLE_TO_GET_ISSUER_CERT_LOCALLY|UNABLE_TO_VERIFY_LEAF_SIGNATURE)/);
        assert.deepEqual(rogueServer.accepted, []);
      } finally {
        await rogueServer.close();
      }
    } finally {
      await server.close();
    }
  });
});

/** In a node: a TLS 1.3 mutual-auth echo server on argv host:port with cert, key, ca files. */
const TLS_SERVER = `
const tls = require('node:tls');
const fs = require('node:fs');
const [host, port, cert, key, ca] = process.argv.slice(1);
tls.createServer({ cert: fs.readFileSync(cert), key: fs.readFileSync(key), ca: fs.readFileSync(ca), requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.3' },
  (s) => s.pipe(s)).listen(Number(port), host, () => console.log('listening'));
`;

/** In a node: connects to host:port (verifying the server's certificate for that IP), prints the
 * echo and the protocol, or exits 2 with the error. */
const TLS_CLIENT = `
const tls = require('node:tls');
const fs = require('node:fs');
const [host, port, cert, key, ca] = process.argv.slice(1);
const s = tls.connect({ host, port: Number(port), cert: fs.readFileSync(cert), key: fs.readFileSync(key), ca: fs.readFileSync(ca), minVersion: 'TLSv1.3' }, () => s.write('ping'));
s.on('data', (d) => { console.log(String(d) + ' ' + s.getProtocol()); process.exitCode = 0; s.destroy(); });
s.on('error', (e) => { console.error(e.code || e.message); process.exit(2); });
s.on('close', () => process.exit(process.exitCode ?? 3));
setTimeout(() => { console.error('timeout'); process.exit(4); }, 5000).unref();
`;

describe('certificates between two namespaces', () => {
  let net: Netns;
  let certs: TestCerts;
  const cleanup: (() => void)[] = [];
  before(async () => {
    net = await Netns.create(['a', 'b']);
    certs = await makeCerts(tempDir({ after: (fn) => cleanup.push(fn) }, 'certs'), net.addrs());
  });
  after(async () => {
    await net.destroy();
    cleanup.forEach((fn) => fn());
  });

  test('a node TLS server is reached at its node address with the certificate checked for that address', async () => {
    const a = certs.node('a');
    const b = certs.node('b');
    const server = net.spawn('a', process.execPath, ['-e', TLS_SERVER, a.addr, '8443', a.server.cert, a.server.key, certs.ca.cert]);
    try {
      await net.waitForPort('b', a.addr, 8443);
      const { stdout } = await net.exec('b', process.execPath, ['-e', TLS_CLIENT, a.addr, '8443', b.client.cert, b.client.key, certs.ca.cert]);
      assert.equal(stdout.trim(), 'ping TLSv1.3');
      // A client certificate from the rogue CA is refused by the server.
      await assert.rejects(net.exec('b', process.execPath, ['-e', TLS_CLIENT, a.addr, '8443', certs.rogue.client.cert, certs.rogue.client.key, certs.ca.cert]), /exit [23]/);
    } finally {
      await server.stop();
    }
    // b's server certificate names b's address, not a's: served at a's address, the client refuses it.
    const impostor = net.spawn('a', process.execPath, ['-e', TLS_SERVER, a.addr, '8444', b.server.cert, b.server.key, certs.ca.cert]);
    try {
      await net.waitForPort('b', a.addr, 8444);
      await assert.rejects(net.exec('b', process.execPath, ['-e', TLS_CLIENT, a.addr, '8444', b.client.cert, b.client.key, certs.ca.cert]), /ERR_TLS_CERT_ALTNAME_INVALID/);
    } finally {
      await impostor.stop();
    }
  });

  test('nbdkit serves with the nbdkit layout and nbdinfo connects with the libnbd layout; the rogue client is refused', async () => {
    const a = certs.node('a');
    const nbdkit = net.spawn('a', 'nbdkit', ['-f', '-i', a.addr, '-p', '10809', '--tls=require', `--tls-certificates=${a.dir}`, '--tls-verify-peer', 'memory', '1M']);
    try {
      await net.waitForPort('b', a.addr, 10809);
      const uri = (dir: string): string => `nbds://${a.addr}:10809/?tls-certificates=${dir}`;
      const { stdout } = await net.exec('b', 'nbdinfo', ['--size', uri(certs.node('b').dir)], { timeoutMs: 20_000 });
      assert.equal(stdout.trim(), String(1024 * 1024));
      await assert.rejects(net.exec('b', 'nbdinfo', ['--size', uri(certs.rogue.clientDir)], { timeoutMs: 20_000 }), /exit 1[\s\S]*nbd_connect_uri: gnutls/);
      // Plain NBD to a --tls=require server is refused too.
      await assert.rejects(net.exec('b', 'nbdinfo', ['--size', `nbd://${a.addr}:10809/`], { timeoutMs: 20_000 }), /server requires TLS/);
    } finally {
      await nbdkit.stop();
    }
    assert.match(nbdkit.stderr(), /gnutls_handshake: Error in the certificate/, 'nbdkit refused the rogue certificate');
  });
});
