// Certificates for the TLS tests of members on other nodes, made by openssl in a temp dir: a CA,
// a server and a client certificate per node (an engine is a client of its remote members), and
// an unrelated "rogue" CA with its own client and server certificates for the wrong-CA tests.
// Keys are EC P-256 (fast to make). Each node also gets a directory in the layouts that libnbd
// (`tls-certificates=DIR`: ca-cert.pem, client-cert.pem, client-key.pem) and nbdkit
// (`--tls-certificates=DIR`: ca-cert.pem, server-cert.pem, server-key.pem) read; one directory
// holds both, since each reads only its own names.

import { execFile } from 'node:child_process';
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';

export interface CertFiles {
  /** PEM certificate. */
  cert: string;
  /** PEM private key (PKCS#8, unencrypted). */
  key: string;
}

export interface NodeCerts {
  name: string;
  /** The node's address, in the certificates' subjectAltName beside 127.0.0.1 and localhost. */
  addr: string;
  /** For a member service on the node (extendedKeyUsage serverAuth). */
  server: CertFiles;
  /** For an engine on the node (extendedKeyUsage clientAuth). */
  client: CertFiles;
  /** The CA certificate that signed both (the same file as TestCerts.ca.cert, copied). */
  ca: string;
  /** ca-cert.pem, server-cert.pem, server-key.pem, client-cert.pem, client-key.pem: libnbd's
   * and nbdkit's layout. */
  dir: string;
}

export interface RogueCerts {
  /** A CA nobody trusts. */
  ca: CertFiles;
  /** A client certificate signed by the rogue CA (SANs as node `addr`'s). */
  client: CertFiles;
  /** A server certificate signed by the rogue CA. */
  server: CertFiles;
  /** libnbd layout for a client presenting the rogue client certificate while trusting the real
   * CA (ca-cert.pem is the real CA's), so that only the server can be the one that refuses. */
  clientDir: string;
  /** nbdkit layout for a server presenting the rogue server certificate and trusting the real CA,
   * so that only the client can be the one that refuses. */
  serverDir: string;
}

export interface TestCerts {
  dir: string;
  ca: CertFiles;
  nodes: Record<string, NodeCerts>;
  node(name: string): NodeCerts;
  rogue: RogueCerts;
}

const DAYS = '30';

function openssl(args: string[], cwd: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('openssl', args, { cwd, timeout: 30_000, env: { ...process.env, PATH: `/usr/bin:/bin:${process.env.PATH ?? ''}` } }, (err, _stdout, stderr) => {
      if (err) reject(new Error(`openssl ${args.join(' ')} failed: ${err.message}\n${stderr}`, { cause: err }));
      else resolve();
    });
  });
}

async function makeCa(dir: string, name: string, cn: string): Promise<CertFiles> {
  const files = { cert: join(dir, `${name}-cert.pem`), key: join(dir, `${name}-key.pem`) };
  await openssl(
    [
      'req', '-x509', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
      '-keyout', files.key, '-out', files.cert, '-days', DAYS, '-subj', `/O=llraid tests/CN=${cn}`,
      '-addext', 'basicConstraints=critical,CA:TRUE',
      '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
      '-addext', 'subjectKeyIdentifier=hash',
    ],
    dir,
  );
  return files;
}

/** A leaf certificate for `cn` signed by `ca`, valid for `addr`, 127.0.0.1 and localhost. */
function makeLeaf(dir: string, name: string, cn: string, addr: string, usage: 'serverAuth' | 'clientAuth', ca: CertFiles): Promise<CertFiles> {
  return makeLeafFor(dir, name, cn, [...new Set([`IP:${addr}`, 'IP:127.0.0.1', 'DNS:localhost'])], usage, ca);
}

/**
 * A leaf certificate whose subjectAltName is exactly `sans` (`DNS:name`, `IP:addr`), signed by
 * `ca`: e.g. the chart's one member service certificate, named `llraid-member` and no address.
 */
export function makeNamedCert(dir: string, name: string, sans: readonly string[], usage: KeyUsage, ca: CertFiles): Promise<CertFiles> {
  mkdirSync(dir, { recursive: true });
  return makeLeafFor(dir, name, sans[0]!.replace(/^(DNS|IP):/, ''), sans, usage, ca);
}

/** extendedKeyUsage: the chart's member certificate has both (the member service and engines present it). */
export type KeyUsage = 'serverAuth' | 'clientAuth' | 'serverAuth,clientAuth';

async function makeLeafFor(dir: string, name: string, cn: string, sanList: readonly string[], usage: KeyUsage, ca: CertFiles): Promise<CertFiles> {
  const files = { cert: join(dir, `${name}-cert.pem`), key: join(dir, `${name}-key.pem`) };
  const csr = join(dir, `${name}.csr`);
  const ext = join(dir, `${name}.ext`);
  const sans = sanList.join(',');
  // GnuTLS (libnbd, nbdkit) checks key usage: an EC key signs in TLS 1.3 (digitalSignature).
  writeFileSync(
    ext,
    [
      'basicConstraints=critical,CA:FALSE',
      'keyUsage=critical,digitalSignature',
      `extendedKeyUsage=${usage}`,
      `subjectAltName=${sans}`,
      'subjectKeyIdentifier=hash',
      'authorityKeyIdentifier=keyid',
      '',
    ].join('\n'),
  );
  await openssl(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', files.key, '-out', csr, '-subj', `/O=llraid tests/CN=${cn}`], dir);
  await openssl(
    ['x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key, '-set_serial', `0x${randomBytes(8).toString('hex')}`, '-days', DAYS, '-sha256', '-extfile', ext, '-out', files.cert],
    dir,
  );
  return files;
}

function layout(dir: string, files: { ca: string; server?: CertFiles; client?: CertFiles }): string {
  mkdirSync(dir, { recursive: true });
  copyFileSync(files.ca, join(dir, 'ca-cert.pem'));
  if (files.server) {
    copyFileSync(files.server.cert, join(dir, 'server-cert.pem'));
    copyFileSync(files.server.key, join(dir, 'server-key.pem'));
  }
  if (files.client) {
    copyFileSync(files.client.cert, join(dir, 'client-cert.pem'));
    copyFileSync(files.client.key, join(dir, 'client-key.pem'));
  }
  return dir;
}

/**
 * Makes the certificates for `nodes` (name → address) under `dir` (which must exist; use a
 * test's tempDir). Needs openssl on PATH; throws when it is missing or fails.
 */
export async function makeCerts(dir: string, nodes: Record<string, string>): Promise<TestCerts> {
  const ca = await makeCa(dir, 'ca', 'llraid test CA');
  const made = await Promise.all(
    Object.entries(nodes).map(async ([name, addr]): Promise<NodeCerts> => {
      const nodeDir = join(dir, 'nodes', name);
      mkdirSync(nodeDir, { recursive: true });
      const server = await makeLeaf(nodeDir, 'server', `${name} member service`, addr, 'serverAuth', ca);
      const client = await makeLeaf(nodeDir, 'client', `${name} engine`, addr, 'clientAuth', ca);
      return { name, addr, server, client, ca: ca.cert, dir: layout(join(dir, 'tls', name), { ca: ca.cert, server, client }) };
    }),
  );
  const rogueDir = join(dir, 'rogue');
  mkdirSync(rogueDir, { recursive: true });
  const rogueCa = await makeCa(rogueDir, 'ca', 'rogue CA');
  const firstAddr = Object.values(nodes)[0] ?? '127.0.0.1';
  const rogueClient = await makeLeaf(rogueDir, 'client', 'rogue engine', firstAddr, 'clientAuth', rogueCa);
  const rogueServer = await makeLeaf(rogueDir, 'server', 'rogue member service', firstAddr, 'serverAuth', rogueCa);
  const byName = Object.fromEntries(made.map((n) => [n.name, n]));
  return {
    dir,
    ca,
    nodes: byName,
    node(name: string): NodeCerts {
      const n = byName[name];
      if (!n) throw new Error(`certs: no node ${JSON.stringify(name)} (nodes: ${Object.keys(byName).join(', ')})`);
      return n;
    },
    rogue: {
      ca: rogueCa,
      client: rogueClient,
      server: rogueServer,
      clientDir: layout(join(dir, 'tls', 'rogue-client'), { ca: ca.cert, client: rogueClient }),
      serverDir: layout(join(dir, 'tls', 'rogue-server'), { ca: ca.cert, server: rogueServer }),
    },
  };
}

/**
 * The chart's member certificate in a TLS directory (`ca.crt`, `tls.crt`, `tls.key`): one for
 * every node, named llraid-member, for server and client use. Also the certificates it came from.
 */
export async function memberTls(root: string): Promise<{ tlsDir: string; certs: TestCerts }> {
  const certs = await makeCerts(root, { any: '127.0.0.1' });
  const member = await makeNamedCert(join(root, 'member'), 'member', ['DNS:llraid-member'], 'serverAuth,clientAuth', certs.ca);
  const tlsDir = join(root, 'member-tls');
  mkdirSync(tlsDir);
  copyFileSync(certs.ca.cert, join(tlsDir, 'ca.crt'));
  copyFileSync(member.cert, join(tlsDir, 'tls.crt'));
  copyFileSync(member.key, join(tlsDir, 'tls.key'));
  return { tlsDir, certs };
}
