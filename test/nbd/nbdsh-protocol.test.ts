// Option negotiation edge cases and deliberately malformed requests, sent by libnbd (nbdsh) to an
// NbdServer over memory devices. With strict mode off libnbd sends what the server must refuse;
// after every refusal the connection must still work and the export must be unchanged.

import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryDevice } from '../../src/block/memory-device.js';
import { NbdServer } from '../../src/nbd/index.js';
import { patternBytes, tool } from './helpers.js';
import { tempDir } from '../support/temp-dir.js';

const SIZE = 16 * 1024 * 1024;

describe('NBD server against nbdsh', () => {
  const dir = tempDir({ after }, 'nbdsh');
  const sock = join(dir, 'nbd.sock');
  const vol = new MemoryDevice(SIZE, { blockSize: 512 });
  const second = new MemoryDevice(1024 * 1024, { blockSize: 4096 });
  const server = new NbdServer({
    exports: [
      { name: 'vol', device: vol, description: 'test volume' },
      { name: 'second', device: second },
    ],
  });
  const uri = (name: string): string => `nbd+unix:///${name}?socket=${sock}`;

  /** Runs a python script inside nbdsh; `URI`, `SOCK` and `SIZE` are defined for it. */
  async function nbdsh(name: string, script: string): Promise<string> {
    const path = join(dir, `${name}.py`);
    writeFileSync(path, `URI = ${JSON.stringify(uri('vol'))}\nSOCK = ${JSON.stringify(sock)}\nSIZE = ${SIZE}\n${script}`);
    return tool('nbdsh', ['-c', `exec(open(${JSON.stringify(path)}).read())`]);
  }

  before(async () => {
    await vol.write(0, patternBytes(SIZE, 11));
    await server.listen({ socket: sock });
  });

  after(async () => {
    await server.close();
  });

  test('option haggling: LIST, INFO of known and unknown exports, meta contexts, then GO', async () => {
    const out = await nbdsh('haggle', `
h = nbd.NBD()
h.set_opt_mode(True)
h.connect_unix(SOCK)
exports = []
h.opt_list(lambda name, desc: exports.append((name, desc)))
print("list", exports)
h.set_export_name("nope")
try:
    h.opt_info()
    print("unknown export accepted")
except nbd.Error as e:
    print("unknown export refused")
h.set_export_name("second")
h.opt_info()
print("second", h.get_size(), h.get_block_size(nbd.SIZE_MINIMUM), h.get_block_size(nbd.SIZE_PREFERRED), h.get_block_size(nbd.SIZE_MAXIMUM))
ctx = []
h.opt_list_meta_context(lambda name: ctx.append(name))
print("contexts", ctx)
h.set_export_name("vol")
h.add_meta_context("base:allocation")
h.opt_go()
print("go", h.get_size(), h.can_meta_context("base:allocation"), h.get_structured_replies_negotiated())
h.shutdown()
h2 = nbd.NBD()
h2.set_opt_mode(True)
h2.connect_unix(SOCK)
h2.opt_abort()
print("aborted", h2.aio_is_closed())
`);
    assert.match(out, /list \[\('vol', 'test volume'\), \('second', ''\)\]/);
    assert.match(out, /unknown export refused/);
    assert.match(out, /second 1048576 4096 4096 33554432/);
    assert.match(out, /contexts \['base:allocation'\]/);
    assert.match(out, new RegExp(`go ${SIZE} True True`));
    assert.match(out, /aborted True/);
  });

  test('an unsupported option (STARTTLS) is refused and negotiation continues in plaintext', async () => {
    const out = await nbdsh('tls', `
h = nbd.NBD()
h.set_tls(nbd.TLS_ALLOW)
h.connect_uri(URI)
print("tls", h.get_tls_negotiated(), h.get_size())
`);
    assert.match(out, new RegExp(`tls False ${SIZE}`));
  });

  test('without structured replies reads use simple replies and block status is not offered', async () => {
    const out = await nbdsh('simple', `
h = nbd.NBD()
h.set_request_structured_replies(False)
h.add_meta_context("base:allocation")
h.connect_uri(URI)
print("structured", h.get_structured_replies_negotiated(), h.can_meta_context("base:allocation"), h.can_df())
print("data", h.pread(4096, 8192)[:8].hex())
`);
    assert.match(out, /structured False False False/);
    assert.match(out, new RegExp(`data ${patternBytes(8192 + 8, 11).subarray(8192).toString('hex')}`));
  });

  test('a client without fixed newstyle is turned away and the server keeps serving', async () => {
    const out = await nbdsh('oldstyle', `
h = nbd.NBD()
h.set_handshake_flags(0)
try:
    h.connect_uri(URI)
    print("connected")
except nbd.Error as e:
    print("refused")
h2 = nbd.NBD()
h2.connect_uri(URI)
print("still serving", h2.get_size())
`);
    assert.match(out, /refused/);
    assert.match(out, new RegExp(`still serving ${SIZE}`));
  });

  test('malformed requests get the right NBD error and leave the connection and the export intact', async () => {
    const out = await nbdsh('malformed', `
h = nbd.NBD()
h.add_meta_context("base:allocation")
h.connect_uri(URI)
h.set_strict_mode(0)
def attempt(label, fn):
    try:
        fn()
        print(label, "ok")
    except nbd.Error as e:
        print(label, e.errno)
attempt("unaligned-read", lambda: h.pread(100, 1))
attempt("unaligned-write", lambda: h.pwrite(b"z" * 100, 512))
attempt("read-past-end", lambda: h.pread(4096, SIZE - 512))
attempt("write-past-end", lambda: h.pwrite(b"z" * 4096, SIZE - 512))
attempt("trim-past-end", lambda: h.trim(4096, SIZE))
attempt("zero-past-end", lambda: h.zero(4096, SIZE))
attempt("oversized-read", lambda: h.pread(64 * 1024 * 1024, 0))
attempt("oversized-write", lambda: h.pwrite(b"z" * (33 * 1024 * 1024), 0))
attempt("bad-read-flag", lambda: h.pread(512, 0, nbd.CMD_FLAG_NO_HOLE))
attempt("bad-write-flag", lambda: h.pwrite(b"z" * 512, 0, nbd.CMD_FLAG_REQ_ONE))
attempt("offset-2^63", lambda: h.pread(512, 2**63))
attempt("df-read", lambda: h.pread(512, 0, nbd.CMD_FLAG_DF))
attempt("flush", lambda: h.flush())
print("alive", h.pread(512, 4096)[:8].hex())
`);
    const expect: Record<string, string> = {
      'unaligned-read': 'EINVAL',
      'unaligned-write': 'EINVAL',
      'read-past-end': 'EINVAL',
      'write-past-end': 'ENOSPC',
      'trim-past-end': 'EINVAL',
      'zero-past-end': 'ENOSPC',
      'oversized-read': 'EINVAL',
      'oversized-write': 'EINVAL',
      'bad-read-flag': 'EINVAL',
      'bad-write-flag': 'EINVAL',
      'offset-2^63': 'EINVAL',
      'df-read': 'ok',
      flush: 'ok',
    };
    for (const [label, result] of Object.entries(expect)) assert.match(out, new RegExp(`^${label.replace(/[\^$]/g, '\\$&')} ${result}$`, 'm'), out);
    assert.match(out, new RegExp(`alive ${patternBytes(4096 + 8, 11).subarray(4096).toString('hex')}`));
    assert.deepEqual(await vol.read(0, SIZE), patternBytes(SIZE, 11));
  });

  test('block status reports written pages as data and the rest as holes, REQ_ONE gives one extent', async () => {
    const dev = second;
    await dev.write(128 * 1024, Buffer.alloc(64 * 1024, 7));
    const map = JSON.parse(await tool('nbdinfo', ['--map', '--json', uri('second')])) as Array<{ offset: number; length: number; type: number }>;
    assert.deepEqual(
      map.map((x) => [x.offset, x.length, x.type]),
      [
        [0, 128 * 1024, 3],
        [128 * 1024, 64 * 1024, 0],
        [192 * 1024, 1024 * 1024 - 192 * 1024, 3],
      ],
    );
    const out = await nbdsh('reqone', `
h = nbd.NBD()
h.set_export_name("second")
h.add_meta_context("base:allocation")
h.connect_unix(SOCK)
seen = []
def cb(meta, offset, entries, err):
    seen.append((meta, offset, list(entries)))
    return 0
h.block_status(1024 * 1024, 0, cb, nbd.CMD_FLAG_REQ_ONE)
h.block_status(64 * 1024, 160 * 1024, cb)
print(seen)
`);
    assert.match(out, /\('base:allocation', 0, \[131072, 3\]\)/);
    assert.match(out, /\('base:allocation', 163840, \[32768, 0, 32768, 3\]\)/);
  });

  test('many requests in flight on one connection all complete, and several connections share the export', async () => {
    const out = await nbdsh('inflight', `
hs = [nbd.NBD() for _ in range(4)]
for h in hs:
    h.connect_uri(URI)
    assert h.can_multi_conn()
bufs = []
for i in range(256):
    h = hs[i % 4]
    buf = nbd.Buffer(4096)
    h.aio_pread(buf, (i * 7919 % 4096) * 4096)
    bufs.append((h, buf, (i * 7919 % 4096) * 4096))
for h in hs:
    while h.aio_in_flight() > 0:
        h.poll(-1)
ok = all(bytes(b.to_bytearray()) == h.pread(4096, off) for h, b, off in bufs)
print("inflight ok", ok)
`);
    assert.match(out, /inflight ok True/);
  });
});
