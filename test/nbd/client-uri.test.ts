// NBD URIs as the client reads them (libnbd's forms): member URIs over TLS and unix sockets.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isNbdError, parseNbdUri } from '../../src/nbd/index.js';

test('nbds://HOST:PORT/UUID: TLS over TCP', () => {
  assert.deepEqual(parseNbdUri('nbds://10.0.0.2:10809/0a1b2c3d-0000-4000-8000-00000000abcd'), {
    uri: 'nbds://10.0.0.2:10809/0a1b2c3d-0000-4000-8000-00000000abcd',
    address: { transport: 'tcp', host: '10.0.0.2', port: 10809 },
    exportName: '0a1b2c3d-0000-4000-8000-00000000abcd',
    tls: true,
  });
});

test('nbd+unix:///UUID?socket=PATH: a plain unix socket', () => {
  const t = parseNbdUri('nbd+unix:///m1?socket=/run/llraid/member.sock');
  assert.deepEqual(t.address, { transport: 'unix', path: '/run/llraid/member.sock' });
  assert.equal(t.exportName, 'm1');
  assert.equal(t.tls, false);
});

test('defaults and encodings: port 10809, IPv6 hosts, percent-encoded names, the default export', () => {
  assert.deepEqual(parseNbdUri('nbd://host/').address, { transport: 'tcp', host: 'host', port: 10809 });
  assert.deepEqual(parseNbdUri('nbd://[::1]:5000/a%20b').address, { transport: 'tcp', host: '::1', port: 5000 });
  assert.equal(parseNbdUri('nbd://[::1]:5000/a%20b').exportName, 'a b');
  assert.equal(parseNbdUri('nbds+unix:///?socket=/s').exportName, '');
  assert.equal(parseNbdUri('nbds+unix:///?socket=/s').tls, true);
});

test('what is not an NBD URI: NBD_URI saying why', () => {
  for (const [uri, why] of [
    ['/dev/sdb', 'expected nbds://'],
    ['http://h/x', 'scheme'],
    ['nbd+unix:///x', 'socket=PATH'],
    ['nbd+unix://host/x?socket=/s', 'no host'],
    ['nbd://h/x?tls=1', 'unknown query parameter tls'],
    ['nbd://user@h/x', 'user names'],
  ]) {
    assert.throws(() => parseNbdUri(uri!), (e: unknown) => isNbdError(e, 'NBD_URI') && e.message.includes(why!) && e.message.includes(uri!), uri);
  }
});

test('tls-hostname=NAME (libnbd): the name the server certificate must carry, kept apart from the host connected to', () => {
  const t = parseNbdUri('nbds://10.214.0.3:10809/file%3Allraid-x-1.img?tls-hostname=llraid-member');
  assert.deepEqual(t.address, { transport: 'tcp', host: '10.214.0.3', port: 10809 });
  assert.equal(t.exportName, 'file:llraid-x-1.img');
  assert.equal(t.tlsHostname, 'llraid-member');
  assert.equal(parseNbdUri('nbds+unix:///m?socket=/s&tls-hostname=member.example.org').tlsHostname, 'member.example.org');
  assert.equal(parseNbdUri('nbds://h/m?tls-hostname=10.0.0.9').tlsHostname, '10.0.0.9');
  assert.equal(parseNbdUri('nbds://h/m').tlsHostname, undefined, 'absent unless given');
  for (const [uri, why] of [
    ['nbd://h/m?tls-hostname=llraid-member', 'tls-hostname is for nbds://'],
    ['nbds://h/m?tls-hostname=', 'expected a host name or an IP address'],
    ['nbds://h/m?tls-hostname=bad%20name', 'expected a host name or an IP address'],
    ['nbds://h/m?tls-hostname=x&tls-verify-peer=false', 'unknown query parameter tls-verify-peer'],
  ]) {
    assert.throws(() => parseNbdUri(uri!), (e: unknown) => isNbdError(e, 'NBD_URI') && e.message.includes(why!), uri);
  }
});
