// `llraid member-serve` as a real process with real TLS (certificates made by openssl), and
// libnbd's nbdinfo and nbdsh as its clients: members listed and attached by device UUID, plain
// TCP and certificates from another CA (or none) refused, GO refused without an epoch, a higher
// epoch fencing the connection of a lower one while it writes (none of its writes lands after
// the new holder's), a lower epoch refused, and the epoch kept across a restart.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createConnection } from 'node:net';
import { connect as connectTls } from 'node:tls';
import { copyFileSync, mkdirSync, readFileSync, truncateSync, writeFileSync, closeSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildCli } from '../support/cli.js';
import { makeMemberCerts, type MemberCerts } from '../support/member-certs.js';
import { tempDir } from '../support/temp-dir.js';
import { TOOL_ENV } from '../nbd/helpers.js';

const MiB = 1024 * 1024;

interface Service {
  child: ChildProcess;
  port: number;
  socket: string;
  stderr: () => string;
  /** Resolves once the service's stderr matches `re` (it is read while the test waits, not during a spawnSync). */
  logged(re: RegExp): Promise<void>;
  events: () => Array<Record<string, unknown>>;
  stop(): Promise<number | null>;
}

async function startService(cli: string, dir: string, certs: MemberCerts, disks: string, tag: string): Promise<Service> {
  const events = join(dir, `events-${tag}.jsonl`);
  const socket = join(dir, `ms-${tag}.sock`);
  const child = spawn(process.execPath, [cli, 'member-serve', '--listen', '127.0.0.1:0', '--tls-cert', certs.server.cert,
    '--tls-key', certs.server.key, '--tls-ca', certs.server.ca, '--socket', socket, '--events', events, disks], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  child.stdout!.resume();
  const exited = new Promise<number | null>((r) => child.once('exit', r));
  const readEvents = (): Array<Record<string, unknown>> => {
    try {
      return readFileSync(events, 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Record<string, unknown>);
    } catch {
      return [];
    }
  };
  const deadline = Date.now() + 20_000;
  for (;;) {
    const tcp = readEvents().find((e) => e.type === 'listening' && e.tls === true);
    if (tcp && readEvents().some((e) => e.type === 'listening' && e.tls === false)) {
      return {
        child,
        port: Number(String(tcp.address).split(':').pop()),
        socket,
        stderr: () => err,
        logged: async (re: RegExp) => {
          const until = Date.now() + 10_000;
          while (!re.test(err)) {
            if (Date.now() > until) assert.match(err, re);
            await new Promise((r) => setTimeout(r, 20));
          }
        },
        events: readEvents,
        stop: () => {
          child.kill('SIGTERM');
          return exited;
        },
      };
    }
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`member-serve did not come up: ${err}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * Runs a libnbd tool, never throwing: status, stdout and stderr. With `debug` (libnbd's debug
 * output, where it says what the server answered: keep it for small transfers, it dumps buffers).
 */
function nbdTool(cmd: string, args: string[], debug = true): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(cmd, args, { env: { ...TOOL_ENV, LIBNBD_DEBUG: debug ? '1' : '0' }, encoding: 'utf8', timeout: 60_000, maxBuffer: 64 * MiB });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/**
 * A client that sends its certificate whatever CAs the server names (GnuTLS, under libnbd,
 * withholds one the server's CA list does not cover): NBD greeting, STARTTLS, then Node's TLS.
 * Resolves with how the connection ended.
 */
async function startTlsWith(port: number, clientDir: string): Promise<string> {
  const socket = createConnection({ host: '127.0.0.1', port });
  await once(socket, 'connect');
  const bytes = (n: number): Promise<Buffer> => new Promise((resolve) => {
    const take = (): void => {
      const b = socket.read(n) as Buffer | null;
      if (b) resolve(b);
      else socket.once('readable', take);
    };
    take();
  });
  await bytes(18);
  const option = Buffer.alloc(20);
  option.writeUInt32BE(1, 0); // NBD_FLAG_C_FIXED_NEWSTYLE
  option.write('IHAVEOPT', 4, 'latin1');
  option.writeUInt32BE(5, 12); // NBD_OPT_STARTTLS
  socket.write(option);
  const reply = await bytes(20);
  assert.equal(reply.readUInt32BE(12), 1, 'STARTTLS acknowledged');
  const secure = connectTls({ socket, servername: 'localhost', ca: readFileSync(join(clientDir, 'ca-cert.pem')),
    cert: readFileSync(join(clientDir, 'client-cert.pem')), key: readFileSync(join(clientDir, 'client-key.pem')) });
  return new Promise((resolve) => {
    secure.on('error', (err) => resolve(`error: ${err.message}`));
    // TLS 1.3: the server checks the client's certificate after the client thinks it is done.
    secure.on('secureConnect', () => secure.write(Buffer.alloc(16)));
    secure.on('close', () => resolve('closed'));
  });
}

function deviceUuid(cli: string, member: string): string {
  const out = spawnSync(process.execPath, [cli, 'examine', '--json', member], { encoding: 'utf8' });
  return (JSON.parse(out.stdout) as { superblock: { deviceUuid: string } }).superblock.deviceUuid;
}

async function setUp(t: { after(fn: () => void): void }, name: string) {
  const cli = await buildCli();
  const dir = tempDir(t, name);
  const certs = makeMemberCerts(dir);
  const disks = join(dir, 'disks');
  mkdirSync(disks);
  const create = spawnSync(process.execPath, [cli, 'create', '-l', '1', '-N', 'remote', '-z', '32M', join(disks, 'a.img'), join(disks, 'b.img')], { encoding: 'utf8' });
  assert.equal(create.status, 0, create.stderr);
  closeSync(openSync(join(disks, 'blank.img'), 'w'));
  truncateSync(join(disks, 'blank.img'), 64 * MiB);
  return { cli, dir, certs, disks };
}

/** A python prelude for nbdsh: attach(export, epoch) over TLS with the engine's certificate. */
function prelude(port: number, clientDir: string): string {
  return `
import nbd, errno
def attach(name, epoch, certs=${JSON.stringify(clientDir)}):
    h = nbd.NBD()
    h.set_tls(nbd.TLS_REQUIRE)
    h.set_tls_certificates(certs)
    h.set_request_structured_replies(True)
    if epoch is not None:
        h.add_meta_context("llraid:epoch=%d" % epoch)
    h.set_export_name(name)
    h.connect_tcp("127.0.0.1", "${port}")
    return h
`;
}

function nbdsh(dir: string, name: string, script: string, debug = true): { status: number | null; stdout: string; stderr: string } {
  const path = join(dir, `${name}.py`);
  writeFileSync(path, script);
  return nbdTool('nbdsh', ['-c', `exec(open(${JSON.stringify(path)}).read())`], debug);
}

test('member-serve: TLS with client certificates only, members by device UUID, refusals that say why', async (t) => {
  const { cli, dir, certs, disks } = await setUp(t, 'member-tls');
  const service = await startService(cli, dir, certs, disks, 'tls');
  t.after(() => service.child.kill('SIGKILL'));
  const uuidA = deviceUuid(cli, join(disks, 'a.img'));
  const uuidB = deviceUuid(cli, join(disks, 'b.img'));
  const base = `nbds://127.0.0.1:${service.port}`;

  const listed = nbdTool('nbdinfo', ['--list', '--json', `${base}/?tls-certificates=${certs.client}`]);
  assert.equal(listed.status, 0, listed.stderr);
  const names = (JSON.parse(listed.stdout) as { exports: Array<{ 'export-name': string; 'export-size': number }> }).exports.map((e) => e['export-name']).sort();
  assert.deepEqual(names, [uuidA, uuidB, 'file:blank.img'].sort(), 'members by device UUID, the blank file by name');

  // A member is read and written only with an epoch; with one it is a plain NBD export.
  const rw = nbdsh(dir, 'rw', `${prelude(service.port, certs.client)}
h = attach(${JSON.stringify(uuidA)}, 3)
print(h.get_size(), h.can_meta_context("llraid:epoch=3"))
h.pwrite(b"x" * 4096, 16 * 1048576)
print(h.pread(4096, 16 * 1048576) == b"x" * 4096)
h.shutdown()
`);
  assert.equal(rw.status, 0, rw.stderr);
  assert.equal(rw.stdout.trim(), `${32 * MiB} True\nTrue`);
  assert.equal(readFileSync(join(disks, '.llraid-epochs', 'a.img'), 'utf8'), '3\n', 'the epoch is on disk');

  const plain = nbdTool('nbdinfo', [`nbd://127.0.0.1:${service.port}/${uuidA}`]);
  assert.notEqual(plain.status, 0);
  assert.match(plain.stderr, /server error message: this server requires TLS: send NBD_OPT_STARTTLS first/);

  const noEpoch = nbdTool('nbdinfo', [`${base}/${uuidA}?tls-certificates=${certs.client}`]);
  assert.notEqual(noEpoch.status, 0);
  assert.match(noEpoch.stderr, new RegExp(`server error message: member ${uuidA}: an epoch is required`));

  const wrong = nbdsh(dir, 'wrong', `${prelude(service.port, certs.client)}
attach("00000000:00000000:00000000:00000000", 3)
`);
  assert.notEqual(wrong.status, 0);
  assert.match(wrong.stderr, /server error message: no member named "00000000:00000000:00000000:00000000" is served here/);

  // libnbd (GnuTLS) withholds a certificate that no CA the server names signed: to the service
  // both are a client without a certificate.
  for (const [who, clientDir] of [['a certificate from another CA', certs.rogueClient], ['no certificate', certs.noCertClient]] as const) {
    const before = service.stderr().split('presented no certificate').length;
    const r = nbdTool('nbdinfo', ['--list', `${base}/?tls-certificates=${clientDir}`]);
    assert.notEqual(r.status, 0, `${who}: refused`);
    assert.doesNotMatch(r.stdout, /export=/, `${who}: nothing listed`);
    await service.logged(new RegExp(`(presented no certificate[^]*){${before}}`));
  }
  // A client that does present the other CA's certificate is refused by name.
  assert.match(await startTlsWith(service.port, certs.rogueClient), /^(closed|error: .*)$/);
  await service.logged(/TLS handshake with 127\.0\.0\.1:\d+ failed: client certificate CN=rogue refused: UNABLE_TO_VERIFY_LEAF_SIGNATURE/);
  assert.equal(service.events().filter((e) => e.type === 'attached').length, 1, 'no refused client attached anything');

  // The unix socket is plain; a copied member (one device UUID on two files) is exported by neither.
  copyFileSync(join(disks, 'a.img'), join(disks, 'copy-of-a.img'));
  const local = nbdTool('nbdinfo', ['--list', '--json', `nbd+unix:///?socket=${service.socket}`]);
  assert.equal(local.status, 0, local.stderr);
  const now = (JSON.parse(local.stdout) as { exports: Array<{ 'export-name': string }> }).exports.map((e) => e['export-name']).sort();
  assert.deepEqual(now, [uuidB, 'file:blank.img'].sort());
  await service.logged(new RegExp(`not exported: device UUID ${uuidA} is on 2 files`));

  assert.equal(await service.stop(), 0, service.stderr());
  assert.deepEqual(service.events().map((e) => e.type).filter((x) => x === 'attached' || x === 'detached' || x === 'stopped'), ['attached', 'detached', 'stopped']);
});

test('member-serve: a higher epoch fences the writing holder, a lower one is refused, and the epoch survives a restart', async (t) => {
  const { cli, dir, certs, disks } = await setUp(t, 'member-epoch');
  let service = await startService(cli, dir, certs, disks, 'first');
  t.after(() => service.child.kill('SIGKILL'));

  // A (epoch 5) queues 64 MiB of writes; while they are in flight B attaches with epoch 7 and
  // writes its own marker over the same range. Whatever A's writes did, none may land after B's.
  const run = nbdsh(dir, 'epochs', `${prelude(service.port, certs.client)}
a = attach("file:blank.img", 5)
a.pwrite(b"a" * 4096, 0)
chunk = 4 * 1048576
cookies = [a.aio_pwrite(b"A" * chunk, i * chunk) for i in range(16)]
while not a.aio_command_completed(cookies[0]):
    a.poll(-1)
b = attach("file:blank.img", 7)
print("b attached")
for i in range(16):
    b.pwrite(b"C" * chunk, i * chunk)
results = ["ok"]
for c in cookies[1:]:
    while True:
        try:
            if a.aio_command_completed(c):
                results.append("ok")
                break
        except nbd.Error as e:
            results.append(errno.errorcode.get(e.errno, str(e.errno)))
            break
        try:
            a.poll(1)
        except nbd.Error:
            pass
print("a results", " ".join(results))
try:
    a.pwrite(b"L" * 4096, 0)
    print("a wrote after the fence")
except nbd.Error as e:
    print("a refused after the fence")
data = b"".join(b.pread(chunk, i * chunk) for i in range(16))
print("only b's data", data == b"C" * (16 * chunk))
b.shutdown()
`, false);
  assert.equal(run.status, 0, `${run.stdout}\n${run.stderr}`);
  const lines = run.stdout.trim().split('\n');
  assert.equal(lines[0], 'b attached');
  const results = lines[1]!.replace(/^a results /, '').split(' ');
  assert.equal(results.length, 16);
  assert.ok(results.some((r) => r !== 'ok'), `some of A's writes were cut by the fence: ${results.join(' ')}`);
  for (const r of results) assert.match(r, /^(ok|ESHUTDOWN|ENOTCONN)$/);
  assert.deepEqual(lines.slice(2), ['a refused after the fence', "only b's data True"]);
  const lower = nbdsh(dir, 'lower', `${prelude(service.port, certs.client)}
attach("file:blank.img", 6)
`);
  assert.notEqual(lower.status, 0);
  assert.match(lower.stderr, /server error message: fenced: member file:blank\.img has accepted epoch 7; this client presented 6/);
  assert.equal(readFileSync(join(disks, '.llraid-epochs', 'blank.img'), 'utf8'), '7\n');
  const fenced = service.events().filter((e) => e.type === 'fenced');
  assert.equal(fenced.length, 1);
  assert.equal(fenced[0]!.epoch, '5');
  assert.equal(fenced[0]!.by, '7');
  await service.logged(/fence file:blank\.img \(.*blank\.img\): connection \d+ from 127\.0\.0\.1:\d+ \(CN=engine\) \(epoch 5\) closed, the member was taken with epoch 7/);

  // Restarted, the service still refuses epoch 6, and takes 7 and 8.
  assert.equal(await service.stop(), 0, service.stderr());
  service = await startService(cli, dir, certs, disks, 'second');
  const again = nbdsh(dir, 'again', `${prelude(service.port, certs.client)}
for e in (6, 7, 8):
    try:
        attach("file:blank.img", e).shutdown()
        print(e, "attached")
    except nbd.Error:
        print(e, "refused")
`);
  assert.equal(again.status, 0, again.stderr);
  assert.deepEqual(again.stdout.trim().split('\n'), ['6 refused', '7 attached', '8 attached']);
  assert.equal(readFileSync(join(disks, '.llraid-epochs', 'blank.img'), 'utf8'), '8\n');
  assert.equal(await service.stop(), 0, service.stderr());
});
