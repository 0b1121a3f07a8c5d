// Certificates for TLS tests, made by openssl in the test's own directory: a CA, a server
// certificate for 127.0.0.1 and localhost, and a client certificate, laid out as nbdkit's
// --tls-certificates and libnbd's tls-certificates directories expect (ca-cert.pem,
// server-cert.pem, server-key.pem, client-cert.pem, client-key.pem).

import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface CertDir {
  dir: string;
  ca: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

/** Makes `<parent>/<name>/` with a fresh CA (named `name`) and its server and client certificates. */
export function makeCertDir(parent: string, name: string): CertDir {
  const dir = join(parent, name);
  mkdirSync(dir, { recursive: true });
  const key = (file: string): void => openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', file], dir);
  key('ca-key.pem');
  openssl(['req', '-x509', '-new', '-key', 'ca-key.pem', '-out', 'ca-cert.pem', '-days', '2', '-subj', `/CN=${name} test CA`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], dir);
  const sign = (role: 'server' | 'client', cn: string, ext: string): void => {
    key(`${role}-key.pem`);
    openssl(['req', '-new', '-key', `${role}-key.pem`, '-out', `${role}.csr`, '-subj', `/CN=${cn}`], dir);
    writeFileSync(join(dir, `${role}.ext`), ext);
    openssl(['x509', '-req', '-in', `${role}.csr`, '-CA', 'ca-cert.pem', '-CAkey', 'ca-key.pem', '-CAcreateserial',
      '-out', `${role}-cert.pem`, '-days', '2', '-extfile', `${role}.ext`], dir);
  };
  sign('server', 'localhost', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n');
  sign('client', `${name} client`, 'extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n');
  return {
    dir,
    ca: join(dir, 'ca-cert.pem'),
    serverCert: join(dir, 'server-cert.pem'),
    serverKey: join(dir, 'server-key.pem'),
    clientCert: join(dir, 'client-cert.pem'),
    clientKey: join(dir, 'client-key.pem'),
  };
}
