// Certificates for the member service tests, made by openssl: a CA, a server certificate for
// 127.0.0.1/localhost, a client certificate, and a client certificate from another CA. Laid out
// in directories as the tools read them: libnbd's `tls-certificates=DIR` (ca-cert.pem,
// client-cert.pem, client-key.pem) and nbdkit's (ca-cert.pem, server-cert.pem, server-key.pem).

import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface MemberCerts {
  /** server-cert.pem, server-key.pem, ca-cert.pem: what `member-serve --tls-*` takes. */
  server: { cert: string; key: string; ca: string; dir: string };
  /** libnbd directory of a client the CA signed. */
  client: string;
  /** libnbd directory of a client whose certificate another CA signed (it trusts the real CA). */
  rogueClient: string;
  /** libnbd directory with the CA only: a client without a certificate. */
  noCertClient: string;
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

function makeCa(dir: string, name: string): void {
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', `${name}-key.pem`, '-out', `${name}-cert.pem`, '-days', '2', '-subj', `/CN=${name}`], dir);
}

function makeLeaf(dir: string, name: string, ca: string, san: string, usage: string): void {
  openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', `${name}-key.pem`, '-out', `${name}.csr`, '-subj', `/CN=${name}`], dir);
  writeFileSync(join(dir, `${name}.ext`), `subjectAltName=${san}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=${usage}\n`);
  openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}-cert.pem`, '-CAkey', `${ca}-key.pem`, '-CAcreateserial',
    '-out', `${name}-cert.pem`, '-days', '2', '-extfile', `${name}.ext`], dir);
}

/** Makes every certificate under `dir` (which must exist). */
export function makeMemberCerts(dir: string): MemberCerts {
  const work = join(dir, 'pki');
  mkdirSync(work);
  makeCa(work, 'ca');
  makeCa(work, 'other-ca');
  makeLeaf(work, 'server', 'ca', 'IP:127.0.0.1,DNS:localhost', 'serverAuth');
  makeLeaf(work, 'engine', 'ca', 'DNS:engine', 'clientAuth');
  makeLeaf(work, 'rogue', 'other-ca', 'DNS:rogue', 'clientAuth');

  const layout = (name: string, files: Record<string, string>): string => {
    const d = join(dir, name);
    mkdirSync(d);
    for (const [to, from] of Object.entries(files)) copyFileSync(join(work, from), join(d, to));
    return d;
  };
  const serverDir = layout('server', { 'ca-cert.pem': 'ca-cert.pem', 'server-cert.pem': 'server-cert.pem', 'server-key.pem': 'server-key.pem' });
  return {
    server: { dir: serverDir, cert: join(serverDir, 'server-cert.pem'), key: join(serverDir, 'server-key.pem'), ca: join(serverDir, 'ca-cert.pem') },
    client: layout('client', { 'ca-cert.pem': 'ca-cert.pem', 'client-cert.pem': 'engine-cert.pem', 'client-key.pem': 'engine-key.pem' }),
    rogueClient: layout('rogue', { 'ca-cert.pem': 'ca-cert.pem', 'client-cert.pem': 'rogue-cert.pem', 'client-key.pem': 'rogue-key.pem' }),
    noCertClient: layout('nocert', { 'ca-cert.pem': 'ca-cert.pem' }),
  };
}
