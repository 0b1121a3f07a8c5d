// `llraid serve` on a file, exercised only by NBD clients we did not write: nbdinfo, nbdcopy,
// qemu-img, qemu-io and fio's nbd engine. The file on disk is the oracle.

import { createHash } from 'node:crypto';
import { createReadStream, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { patternBytes, startServe, stoppedCleanly, tool, type ServeProcess } from './helpers.js';
import { tempDir } from '../support/temp-dir.js';

const SIZE = 64 * 1024 * 1024;

async function sha256(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

describe('llraid serve with real NBD clients', () => {
  const dir = tempDir({ after }, 'nbd-clients', '/dev/shm');
  const file = join(dir, 'disk.img');
  let serve: ServeProcess;

  before(async () => {
    writeFileSync(file, Buffer.alloc(0));
    await tool('truncate', ['-s', String(SIZE), file]);
    serve = await startServe(['--file', file, '--socket', join(dir, 'nbd.sock'), '--export-name', 'vol']);
  });

  after(async () => {
    await serve?.stop();
  });

  test('the socket is created with mode 0600', () => {
    assert.equal(statSync(join(dir, 'nbd.sock')).mode & 0o777, 0o600);
  });

  test('nbdinfo --json reports the size, flags, block sizes and base:allocation', async () => {
    const info = JSON.parse(await tool('nbdinfo', ['--json', serve.uri])) as {
      protocol: string;
      structured: boolean;
      exports: Array<Record<string, unknown>>;
    };
    assert.equal(info.protocol, 'newstyle-fixed');
    assert.equal(info.structured, true);
    const e = info.exports[0]!;
    assert.equal(e['export-name'], 'vol');
    assert.equal(e['export-size'], SIZE);
    assert.equal(e.is_read_only, false);
    for (const flag of ['can_flush', 'can_fua', 'can_trim', 'can_zero', 'can_multi_conn', 'can_cache', 'can_df']) {
      assert.equal(e[flag], true, flag);
    }
    assert.equal(e.block_size_minimum, 512);
    assert.equal(e.block_size_preferred, 4096);
    assert.equal(e.block_size_maximum, 32 * 1024 * 1024);
    assert.deepEqual(e.contexts, ['base:allocation']);
  });

  test('nbdinfo --list shows the export and --map covers the whole export', async () => {
    assert.match(await tool('nbdinfo', ['--list', serve.uri.replace('/vol?', '/?')]), /export="vol"/);
    const map = JSON.parse(await tool('nbdinfo', ['--map', '--json', serve.uri])) as Array<{ offset: number; length: number; type: number }>;
    assert.equal(map.reduce((n, x) => n + x.length, 0), SIZE);
  });

  test('qemu-io writes, reads back, discards and zeroes through the server', async () => {
    const out = await tool('qemu-io', [
      '-f', 'raw', serve.uri,
      '-c', 'write -P 0x5a 1M 256k',
      '-c', 'read -P 0x5a 1M 256k',
      '-c', 'write -z 1M 64k',
      '-c', 'read -P 0 1M 64k',
      '-c', 'read -P 0x5a 1088k 192k',
      '-c', 'write -z -u 4M 2M',
      '-c', 'read -P 0 4M 2M',
      '-c', 'discard 8M 1M',
      '-c', 'write -f -P 0x11 12M 4k',
      '-c', 'flush',
    ]);
    assert.doesNotMatch(out, /Pattern verification failed|error|failed/i, out);
    const disk = readFileSync(file);
    assert.ok(disk.subarray(1024 * 1024 + 65536, 1024 * 1024 + 262144).every((b) => b === 0x5a));
    assert.ok(disk.subarray(1024 * 1024, 1024 * 1024 + 65536).every((b) => b === 0));
    assert.ok(disk.subarray(12 * 1024 * 1024, 12 * 1024 * 1024 + 4096).every((b) => b === 0x11));
  });

  test('qemu-img convert copies an image in and out unchanged', async () => {
    const src = join(dir, 'src.raw');
    writeFileSync(src, patternBytes(SIZE, 7));
    await tool('qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'raw', src, serve.uri]);
    const back = join(dir, 'back.raw');
    await tool('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', serve.uri, back]);
    assert.equal(await sha256(back), await sha256(src));
    assert.equal(await sha256(file), await sha256(src));
    await tool('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', src, serve.uri]);
  });

  test('fio with verify=crc32c passes for random and sequential writes at QD 32', async () => {
    for (const rw of ['randwrite', 'write']) {
      const out = await tool('fio', [
        '--name=verify', '--ioengine=nbd', `--uri=${serve.uri}`, `--rw=${rw}`, '--bsrange=4k-256k', '--iodepth=32',
        '--size=48M', '--verify=crc32c', '--verify_fatal=1', '--do_verify=1', '--randrepeat=0',
      ]);
      assert.match(out, /err= 0/, out);
      assert.doesNotMatch(out, /verify: bad|crc32c: verify failed/i, out);
    }
  });
});

describe('llraid serve: 1 GiB nbdcopy round trip', () => {
  const dir = tempDir({ after }, 'nbd-copy', '/dev/shm');


  test('nbdcopy copies 1 GiB in and out with identical checksums', async () => {
    const size = 1024 * 1024 * 1024;
    const disk = join(dir, 'disk.img');
    await tool('truncate', ['-s', String(size), disk]);
    const src = join(dir, 'src.bin');
    await tool('sh', ['-c', `head -c ${size} /dev/urandom > ${src}`]);
    const serve = await startServe(['--file', disk, '--socket', join(dir, 'nbd.sock')]);
    try {
      await tool('nbdcopy', ['--flush', src, serve.uri]);
      const out = join(dir, 'out.bin');
      await tool('nbdcopy', [serve.uri, out]);
      const want = await sha256(src);
      assert.equal(await sha256(out), want);
      assert.equal(await sha256(disk), want);
    } finally {
      assert.equal(await serve.stop(), 0);
    }
  });
});

describe('llraid serve: lifecycle and options', () => {
  test('SIGTERM and SIGINT stop the server cleanly and remove the socket', async (t) => {
    for (const signal of ['SIGTERM', 'SIGINT'] as const) {
      const dir = tempDir(t, 'nbd-stop');
      const disk = join(dir, 'disk.img');
      await tool('truncate', ['-s', '1M', disk]);
      const sock = join(dir, 'nbd.sock');
      const serve = await startServe(['--file', disk, '--socket', sock]);
      try {
        await tool('nbdsh', ['-u', serve.uri, '-c', 'h.pwrite(b"x" * 512, 0, nbd.CMD_FLAG_FUA)']);
      } catch (err) {
        await serve.stop('SIGKILL');
        throw err;
      }
      assert.equal(await serve.stop(signal), 0, serve.stderr());
      await stoppedCleanly(serve, signal);
      assert.throws(() => statSync(sock), /ENOENT/);
      assert.equal(readFileSync(disk).subarray(0, 512).toString(), 'x'.repeat(512));
    }
  });

  test('--read-only refuses writes with EPERM and still serves reads', async (t) => {
    const dir = tempDir(t, 'nbd-ro');
    const disk = join(dir, 'disk.img');
    writeFileSync(disk, patternBytes(1024 * 1024, 3));
    const serve = await startServe(['--file', disk, '--socket', join(dir, 'nbd.sock'), '--read-only']);
    try {
      const out = await tool('nbdsh', ['-u', serve.uri, '-c', [
        'assert h.is_read_only()',
        'assert not h.can_trim() and not h.can_zero()',
        'h.set_strict_mode(0)',
        'try:\n  h.pwrite(b"y" * 512, 0)\n  print("accepted")\nexcept nbd.Error as e:\n  print("errno", e.errno)',
        'print(h.pread(512, 0)[:16].hex())',
      ].join('\n')]);
      assert.match(out, /errno EPERM/);
      assert.match(out, new RegExp(patternBytes(16, 3).toString('hex')));
    } finally {
      await serve.stop();
    }
    assert.deepEqual(readFileSync(disk), patternBytes(1024 * 1024, 3));
  });

  test('--listen serves over TCP on loopback addresses and on names that resolve only to loopback', async (t) => {
    const dir = tempDir(t, 'nbd-tcp');
    const disk = join(dir, 'disk.img');
    await tool('truncate', ['-s', '2M', disk]);
    // `localhost` and `2130706433` (getaddrinfo's number form of 127.0.0.1) are names: they
    // are resolved, checked, and bound as the address they resolve to.
    for (const [host, bound] of [['127.0.0.1', '127.0.0.1'], ['127.1.2.3', '127.1.2.3'], ['[::1]', '[::1]'], ['localhost', null], ['2130706433', '127.0.0.1']] as const) {
      const port = 20000 + Math.floor(Math.random() * 20000);
      const serve = await startServe(['--file', disk, '--listen', `${host}:${port}`]);
      try {
        if (bound !== null) assert.equal(serve.uri, `nbd://${bound}:${port}/`);
        else assert.match(serve.uri, new RegExp(`^nbd://(127\\.0\\.0\\.1|\\[::1\\]):${port}/$`));
        const info = JSON.parse(await tool('nbdinfo', ['--json', serve.uri])) as { exports: Array<{ 'export-size': number }> };
        assert.equal(info.exports[0]!['export-size'], 2 * 1024 * 1024, host);
      } finally {
        await serve.stop();
      }
    }
  });

  test('--listen refuses every non-loopback address, saying why and what to use, before it opens anything', async () => {
    const { spawnSync } = await import('node:child_process');
    const { CLI } = await import('./helpers.js');
    const why = 'plain NBD over TCP has no TLS or authentication, so anyone who can reach the port could read and write the export; ' +
      'serve on a unix socket (--socket PATH) or a loopback address (--listen 127.0.0.1:10809) instead';
    const cases: Array<[string, string]> = [
      ['0.0.0.0:10809', 'found "0.0.0.0"'],
      [':10809', 'found an empty host (every address)'],
      ['[::]:10809', 'found "::"'],
      ['192.0.2.1:10809', 'found "192.0.2.1"'],
      ['[::ffff:10.0.0.1]:10809', 'found "::ffff:10.0.0.1"'],
      // getaddrinfo resolves "10.1" to 10.0.0.1 without asking DNS: a name that is not loopback.
      ['10.1:10809', 'found "10.1", which resolves to 10.0.0.1'],
    ];
    for (const [listen, found] of cases) {
      // The file does not exist: a refusal that names the address shows nothing was opened first.
      const r = spawnSync(process.execPath, [CLI, 'serve', '--file', '/nonexistent/disk.img', '--listen', listen], { encoding: 'utf8' });
      assert.equal(r.status, 2, `${listen}: ${r.stderr}`);
      assert.equal(r.stderr, `llraid: --listen ${listen}: expected a loopback address (127.0.0.0/8, ::1, or a name that resolves only to them), ${found}: ${why}\n`);
    }
    const unknown = spawnSync(process.execPath, [CLI, 'serve', '--file', '/nonexistent/disk.img', '--listen', 'no-such-host.invalid:10809'], { encoding: 'utf8' });
    assert.equal(unknown.status, 2);
    assert.match(unknown.stderr, /^llraid: --listen no-such-host.invalid:10809: expected a loopback address .*, found "no-such-host.invalid", which does not resolve: .*; serve on a unix socket \(--socket PATH\)/);
  });

  test('a missing file or a bad address is a clear error, not a crash', async () => {
    const { spawnSync } = await import('node:child_process');
    const { CLI } = await import('./helpers.js');
    const missing = spawnSync(process.execPath, [CLI, 'serve', '--file', '/nonexistent/disk.img', '--socket', '/tmp/x.sock'], { encoding: 'utf8' });
    assert.equal(missing.status, 1);
    assert.match(missing.stderr, /^llraid: \/nonexistent\/disk.img: no such file \(EINVAL\)/);
    const both = spawnSync(process.execPath, [CLI, 'serve', '--file', '/dev/null', '--socket', 'a', '--listen', 'b:1'], { encoding: 'utf8' });
    assert.equal(both.status, 2);
    assert.match(both.stderr, /exactly one of --socket PATH or --listen HOST:PORT/);
  });
});
