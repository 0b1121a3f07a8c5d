// Bad input for members on other nodes (issue 13), end to end: each refusal is an error that
// names the member, and leaves every member file byte as it was. Certificates from another CA,
// plain NBD to a TLS-only service, an epoch lower than one the member accepted, a device UUID the
// service does not have, a member of another array in assemble, and a server that is not an
// llraid member service (nbdkit) given an epoch.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { deviceUuidOf, makeCluster, MiB } from './cluster.js';

const hash = (path: string): string => createHash('sha256').update(readFileSync(path)).digest('hex');

test('refusals: wrong CA, plain TCP, lower epoch, wrong UUID, another array\'s member, not llraid: each names the member and writes nothing', async (t) => {
  const c = await makeCluster(t, 'remote-refuse', ['a', 'b', 'c']);
  const local = c.blank('a', 'a.img', 32 * MiB);
  const other = c.blank('a', 'other.img', 32 * MiB);
  const remoteFile = c.blank('b', 'b.img', 32 * MiB);
  const otherRemote = c.blank('b', 'b2.img', 32 * MiB);
  const ms = await c.memberServe('b');
  const made = await c.llraid('a', ['create', '-l', '1', '-N', 'vol', ...c.remoteArgs('a', 6), local, ms.uri('file:b.img')]);
  assert.equal(made.code, 0, made.stderr);
  const made2 = await c.llraid('a', ['create', '-l', '1', '-N', 'other', ...c.remoteArgs('a', 6), other, ms.uri('file:b2.img')]);
  assert.equal(made2.code, 0, made2.stderr);
  const uuid = await deviceUuidOf(c, 'b', remoteFile);
  const member = ms.uri(uuid);
  const files = [local, other, remoteFile, otherRemote];
  const before = files.map(hash);
  const a = c.certs.node('a');
  const tlsOf = (cert: string, key: string): string[] => ['--tls-cert', cert, '--tls-key', key, '--tls-ca', a.ca, '--member-timeout', '5'];

  // nbdkit on node c: an NBD server with TLS and client certificates, but no epochs.
  c.blank('c', 'plain.img', 32 * MiB);
  const nbdkit = c.net.spawn('c', 'nbdkit', ['--foreground', '--exit-with-parent', '-i', c.net.addr('c'), '-p', '10809', '--tls=require',
    `--tls-certificates=${c.certs.node('c').dir}`, '--tls-verify-peer', 'file', `file=${c.disks('c')}/plain.img`]);
  t.after(() => nbdkit.stop());
  await c.net.waitForPort('a', c.net.addr('c'), 10809);

  const cases: Array<{ what: string; args: string[]; names: string; why: RegExp }> = [
    { what: 'a certificate from another CA', args: ['examine', ...tlsOf(c.certs.rogue.client.cert, c.certs.rogue.client.key), '--epoch', '6', member], names: member, why: /TLS|certificate|handshake/i },
    { what: 'plain TCP', args: ['examine', '--epoch', '6', member.replace('nbds://', 'nbd://')], names: member.replace('nbds://', 'nbd://'), why: /requires TLS/ },
    { what: 'a lower epoch', args: ['serve', '--socket', `${c.dir}/never.sock`, ...c.remoteArgs('a', 5), member, local], names: member, why: /fenced: member .* has accepted epoch 6; this client presented 5/ },
    // The local member carries epoch 6 as well (create presented it): opened alone, it is refused too.
    { what: 'a lower epoch, local member', args: ['serve', '--socket', `${c.dir}/never2.sock`, ...c.remoteArgs('a', 5), local, member], names: local, why: /fenced: member .* has accepted epoch 6; this engine presented 5/ },
    { what: 'a wrong UUID', args: ['examine', ...c.remoteArgs('a', 6), ms.uri('00000000:00000000:00000000:00000000')], names: ms.uri('00000000:00000000:00000000:00000000'), why: /no (member|export) named/ },
    { what: 'a member of another array', args: ['assemble', ...c.remoteArgs('a', 6), local, ms.uri(await deviceUuidOf(c, 'b', otherRemote))], names: ms.uri(await deviceUuidOf(c, 'b', otherRemote)), why: /another array|array uuid|belongs|different array/i },
    { what: 'a server that is not llraid', args: ['create', '-l', '1', '-N', 'x', '--force', ...c.remoteArgs('a', 6), other, `nbds://${c.net.addr('c')}:10809/`], names: `nbds://${c.net.addr('c')}:10809/`, why: /not an llraid member service/ },
  ];
  for (const k of cases) {
    const r = await c.llraid('a', k.args);
    assert.notEqual(r.code, 0, `${k.what}: refused (stdout ${r.stdout})`);
    assert.ok(r.stderr.includes(k.names), `${k.what}: the error names the member ${k.names}: ${r.stderr}`);
    assert.match(r.stderr, k.why, `${k.what}: says why`);
    t.diagnostic(`${k.what}: ${r.stderr.trim().split('\n')[0]}`);
  }
  assert.deepEqual(files.map(hash), before, 'no member file changed');
  assert.equal(readFileSync(`${c.disks('b')}/.llraid-epochs/b.img`, 'utf8'), '6\n', 'the refused lower epoch did not lower the stored one');
});
