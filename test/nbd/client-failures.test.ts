// How the NBD client fails: every way a server can be away, refuse, break the protocol, stall
// or fence ends in a typed error naming the URI, never a hang or a crash; a device whose
// connection is lost, timed out or fenced fails every outstanding and later request, while an
// error reply for one request (ENOSPC, EINVAL) fails that request only.

import { join } from 'node:path';
import { createServer } from 'node:net';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { WriteOptions } from '../../src/block/block-device.js';
import { isBlockError, NoSpaceError, type BlockErrorCode } from '../../src/block/errors.js';
import { FilterDevice } from '../../src/block/filter-device.js';
import { MemoryDevice } from '../../src/block/memory-device.js';
import { isNbdError, NbdClientDevice, NbdServer, type NbdErrorCode } from '../../src/nbd/index.js';
import {
  NBD_EINVAL,
  NBD_EIO,
  NBD_ESHUTDOWN,
  REP_ERR_POLICY,
  REPLY_TYPE_ERROR_OFFSET,
  REPLY_TYPE_NONE,
  REPLY_TYPE_OFFSET_DATA,
  REPLY_TYPE_OFFSET_HOLE,
  STRUCTURED_REPLY_MAGIC,
} from '../../src/nbd/protocol.js';
import { tempDir } from '../support/temp-dir.js';
import { freePort, startNbdkit } from './client-helpers.js';
import { chunk, errorChunk, fakeServer, honestHandshake, readRequest, simpleReply, u64 } from './client-fake-server.js';

const MiB = 1024 * 1024;

async function rejectsNbd(p: Promise<unknown>, code: NbdErrorCode, ...mentions: string[]): Promise<Error> {
  const err = await p.then(() => assert.fail(`expected ${code}`), (e: unknown) => e as Error);
  assert.ok(isNbdError(err, code), `expected NbdError ${code}, found ${String(err)}`);
  for (const m of mentions) assert.ok(err.message.includes(m), `${JSON.stringify(err.message)} mentions ${m}`);
  return err;
}

async function rejectsBlock(p: Promise<unknown>, code: BlockErrorCode, ...mentions: string[]): Promise<Error> {
  const err = await p.then(() => assert.fail(`expected ${code}`), (e: unknown) => e as Error);
  assert.ok(isBlockError(err, code), `expected BlockError ${code}, found ${String(err)}`);
  for (const m of mentions) assert.ok(err.message.includes(m), `${JSON.stringify(err.message)} mentions ${m}`);
  return err;
}

describe('NBD client: connecting', () => {
  const dir = tempDir({ after }, 'nbd-client-connect');

  test('nothing at a unix socket: NBD_CONNECT naming the URI', async () => {
    const uri = `nbd+unix:///x?socket=${join(dir, 'none.sock')}`;
    await rejectsNbd(NbdClientDevice.connect({ uri }), 'NBD_CONNECT', uri, 'no such socket');
  });

  test('connection refused on TCP: NBD_CONNECT naming the address', async () => {
    const port = await freePort();
    const uri = `nbd://127.0.0.1:${port}/x`;
    await rejectsNbd(NbdClientDevice.connect({ uri }), 'NBD_CONNECT', uri, `127.0.0.1:${port}`, 'refused');
  });

  test('a server that accepts and says nothing: NBD_CONNECT after connectTimeoutMs', async () => {
    const silent = createServer(() => undefined);
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const port = (silent.address() as { port: number }).port;
    try {
      const t0 = Date.now();
      await rejectsNbd(NbdClientDevice.connect({ uri: `nbd://127.0.0.1:${port}/x`, connectTimeoutMs: 300 }), 'NBD_CONNECT', 'within 300 ms');
      assert.ok(Date.now() - t0 < 2000);
    } finally {
      silent.close();
    }
  });

  test('a URI that is not one: NBD_URI', async () => {
    await rejectsNbd(NbdClientDevice.connect({ uri: 'http://example/x' }), 'NBD_URI', 'http');
    await rejectsNbd(NbdClientDevice.connect({ uri: 'nbd+unix:///x' }), 'NBD_URI', 'socket=PATH');
  });

  test('an nbds URI without certificates: NBD_TLS before anything is sent', async () => {
    await rejectsNbd(NbdClientDevice.connect({ uri: 'nbds://127.0.0.1:1/x' }), 'NBD_TLS', '--tls-cert');
  });
});

describe('NBD client: refusals in the handshake', () => {
  const dir = tempDir({ after }, 'nbd-client-refusals');
  const server = new NbdServer({ exports: [{ name: 'vol', device: new MemoryDevice(MiB) }] });
  let nbdkit: Awaited<ReturnType<typeof startNbdkit>>;
  before(async () => {
    await server.listen({ socket: join(dir, 'llraid.sock') });
    nbdkit = await startNbdkit(dir, join(dir, 'nbdkit.sock'), ['memory', '1M']);
  });
  after(async () => {
    await server.close();
    await nbdkit?.stop();
  });

  test('a wrong export name (a wrong member UUID): NBD_NO_EXPORT naming it and the server', async () => {
    const uri = `nbd+unix:///0a1b2c3d-wrong?socket=${join(dir, 'llraid.sock')}`;
    await rejectsNbd(NbdClientDevice.connect({ uri }), 'NBD_NO_EXPORT', '"0a1b2c3d-wrong"', uri);
  });

  test('an epoch given to nbdkit: NBD_NOT_MEMBER, "not an llraid member service"', async () => {
    const uri = `nbd+unix:///?socket=${join(dir, 'nbdkit.sock')}`;
    await rejectsNbd(NbdClientDevice.connect({ uri, epoch: 5n }), 'NBD_NOT_MEMBER', uri, 'is not an llraid member service', 'did not accept the attach epoch');
  });

  test("an epoch given to llraid's plain NbdServer: NBD_NOT_MEMBER", async () => {
    const uri = `nbd+unix:///vol?socket=${join(dir, 'llraid.sock')}`;
    await rejectsNbd(NbdClientDevice.connect({ uri, epoch: 5n }), 'NBD_NOT_MEMBER', 'is not an llraid member service');
  });

  test('a server that accepts the epoch context attaches', async () => {
    const fake = await fakeServer(dir, async (socket, reader) => {
      await honestHandshake(socket, reader, { acceptContexts: true });
      const r = await readRequest(reader);
      socket.write(simpleReply(r.cookie));
    });
    try {
      const dev = await NbdClientDevice.connect({ uri: fake.uri('member'), epoch: 18446744073709551615n });
      await dev.flush();
      await dev.close();
    } finally {
      await fake.close();
    }
  });

  test('GO refused with a fenced: policy: FencedError at connect', async () => {
    const fake = await fakeServer(dir, async (socket, reader) => {
      await honestHandshake(socket, reader, { acceptContexts: true, refuseGo: { type: REP_ERR_POLICY, message: 'fenced: member m has accepted epoch 9; this client presented 5' } });
    });
    try {
      await rejectsBlock(NbdClientDevice.connect({ uri: fake.uri('m'), epoch: 5n }), 'EFENCED', 'has accepted epoch 9', fake.uri('m'));
    } finally {
      await fake.close();
    }
  });

  test('GO refused by policy otherwise: NBD_REMOTE with the server message', async () => {
    const fake = await fakeServer(dir, async (socket, reader) => {
      await honestHandshake(socket, reader, { acceptContexts: true, refuseGo: { type: REP_ERR_POLICY, message: 'an epoch is required' } });
    });
    try {
      await rejectsNbd(NbdClientDevice.connect({ uri: fake.uri('m') }), 'NBD_REMOTE', 'NBD_REP_ERR_POLICY', 'an epoch is required');
    } finally {
      await fake.close();
    }
  });
});

describe('NBD client: servers that break the protocol', () => {
  const dir = tempDir({ after }, 'nbd-client-garbage');

  test('garbage instead of a greeting: NBD_PROTOCOL, no crash', async () => {
    const fake = await fakeServer(dir, (socket) => {
      socket.write('HTTP/1.1 400 Bad Request\r\n\r\n');
    });
    try {
      await rejectsNbd(NbdClientDevice.connect({ uri: fake.uri() }), 'NBD_PROTOCOL', 'greeting magic');
    } finally {
      await fake.close();
    }
  });

  test('a server that hangs up in the handshake: NBD_CLOSED', async () => {
    const fake = await fakeServer(dir, (socket) => void socket.end());
    try {
      await rejectsNbd(NbdClientDevice.connect({ uri: fake.uri() }), 'NBD_CLOSED', fake.uri());
    } finally {
      await fake.close();
    }
  });

  for (const [name, reply, structured] of [
    ['a reply with a bad magic', (c: Buffer) => simpleReply(c, 0, 0xdeadbeef), true],
    ['a reply for an unknown cookie', () => simpleReply(Buffer.from('ffffffff00000000', 'hex')), true],
    ['a structured reply never negotiated', (c: Buffer) => simpleReply(c, 0, STRUCTURED_REPLY_MAGIC), false],
  ] as const) {
    test(`${name}: the device fails with EIO (cause NBD_PROTOCOL), every request rejects`, async () => {
      const fake = await fakeServer(dir, async (socket, reader) => {
        await honestHandshake(socket, reader, { structured });
        const r = await readRequest(reader);
        await readRequest(reader);
        socket.write(reply(r.cookie));
      });
      try {
        const dev = await NbdClientDevice.connect({ uri: fake.uri() });
        const a = dev.write(0, Buffer.alloc(512));
        const b = dev.flush();
        const err = await rejectsBlock(a, 'EIO', 'broke the NBD protocol');
        assert.ok(isNbdError(err.cause, 'NBD_PROTOCOL'));
        await rejectsBlock(b, 'EIO');
        await rejectsBlock(dev.read(0, 512), 'EIO', 'broke the NBD protocol');
        assert.match((await dev.health())!, /broke the NBD protocol/);
        await dev.close();
        await rejectsBlock(dev.read(0, 512), 'ESHUTDOWN');
      } finally {
        await fake.close();
      }
    });
  }
});

describe('NBD client: READ replies in several chunks', () => {
  const dir = tempDir({ after }, 'nbd-client-chunks');

  test('data and hole chunks out of order fill the buffer; an ERROR_OFFSET chunk fails that READ only', async () => {
    const fake = await fakeServer(dir, async (socket, reader) => {
      await honestHandshake(socket, reader);
      const r = await readRequest(reader);
      // [0, 4096) as a hole, [4096, 8192) as data, sent back to front, then an empty final chunk.
      const hole = Buffer.concat([u64(r.offset), Buffer.from([0, 0, 0x10, 0])]);
      socket.write(chunk(r.cookie, REPLY_TYPE_OFFSET_DATA, Buffer.concat([u64(r.offset + 4096), Buffer.alloc(4096, 9)]), false));
      socket.write(chunk(r.cookie, REPLY_TYPE_OFFSET_HOLE, hole, false));
      socket.write(chunk(r.cookie, REPLY_TYPE_NONE, Buffer.alloc(0), true));
      const s = await readRequest(reader);
      const msg = Buffer.from('bad sector');
      const len = Buffer.alloc(6);
      len.writeUInt32BE(NBD_EIO, 0);
      len.writeUInt16BE(msg.length, 4);
      socket.write(chunk(s.cookie, REPLY_TYPE_OFFSET_DATA, Buffer.concat([u64(s.offset), Buffer.alloc(512, 1)]), false));
      socket.write(chunk(s.cookie, REPLY_TYPE_ERROR_OFFSET, Buffer.concat([len, msg, u64(s.offset + 512)]), true));
      const t = await readRequest(reader);
      socket.write(chunk(t.cookie, REPLY_TYPE_OFFSET_DATA, Buffer.concat([u64(t.offset), Buffer.alloc(512, 2)]), true));
    });
    try {
      const dev = await NbdClientDevice.connect({ uri: fake.uri() });
      const out = Buffer.alloc(8192, 0xff);
      await dev.readInto(65536, out);
      assert.ok(out.subarray(0, 4096).equals(Buffer.alloc(4096)));
      assert.ok(out.subarray(4096).equals(Buffer.alloc(4096, 9)));
      await rejectsBlock(dev.read(0, 1024), 'EIO', 'bad sector', 'READ [0, +1024)');
      assert.ok((await dev.read(512, 512)).equals(Buffer.alloc(512, 2)));
      await dev.close();
    } finally {
      await fake.close();
    }
  });

  test('a READ whose chunks do not cover it: EIO, the device fails', async () => {
    const fake = await fakeServer(dir, async (socket, reader) => {
      await honestHandshake(socket, reader);
      const r = await readRequest(reader);
      socket.write(chunk(r.cookie, REPLY_TYPE_OFFSET_DATA, Buffer.concat([u64(r.offset), Buffer.alloc(512)]), true));
    });
    try {
      const dev = await NbdClientDevice.connect({ uri: fake.uri() });
      await rejectsBlock(dev.read(0, 1024), 'EIO', 'covered 512 bytes');
      await rejectsBlock(dev.flush(), 'EIO');
      await dev.close();
    } finally {
      await fake.close();
    }
  });
});

describe('NBD client: fencing', () => {
  const dir = tempDir({ after }, 'nbd-client-fence');

  test('an error reply with a fenced: message: FencedError for it, the outstanding and every later request', async () => {
    const fake = await fakeServer(dir, async (socket, reader) => {
      await honestHandshake(socket, reader, { acceptContexts: true });
      const first = await readRequest(reader);
      await readRequest(reader);
      await readRequest(reader);
      socket.write(errorChunk(first.cookie, NBD_ESHUTDOWN, 'fenced: member m taken with epoch 7'));
    });
    try {
      const dev = await NbdClientDevice.connect({ uri: fake.uri('m'), epoch: 3n });
      const writes = [0, 1, 2].map((i) => dev.write(i * 512, Buffer.alloc(512)));
      await rejectsBlock(writes[0]!, 'EFENCED', 'fenced: member m taken with epoch 7');
      await rejectsBlock(writes[1]!, 'EFENCED');
      await rejectsBlock(writes[2]!, 'EFENCED');
      await rejectsBlock(dev.read(0, 512), 'EFENCED');
      await dev.close();
    } finally {
      await fake.close();
    }
  });

  test('an EINVAL error reply fails that request only', async () => {
    const fake = await fakeServer(dir, async (socket, reader) => {
      await honestHandshake(socket, reader);
      const r = await readRequest(reader);
      socket.write(errorChunk(r.cookie, NBD_EINVAL, 'misaligned'));
      const s = await readRequest(reader);
      socket.write(simpleReply(s.cookie));
    });
    try {
      const dev = await NbdClientDevice.connect({ uri: fake.uri() });
      await rejectsBlock(dev.write(0, Buffer.alloc(512)), 'EINVAL', 'misaligned');
      await dev.flush();
      assert.equal(await dev.health(), undefined);
      await dev.close();
    } finally {
      await fake.close();
    }
  });
});

/** A memory device that has no room past `full`. */
class FullDevice extends FilterDevice {
  constructor(private readonly full: number) {
    super(new MemoryDevice(4 * MiB));
  }
  override write(offset: number, data: Uint8Array, options?: WriteOptions): Promise<void> {
    if (offset + data.length > this.full) return Promise.reject(new NoSpaceError('the backing store is full'));
    return super.write(offset, data, options);
  }
}

describe('NBD client: per-request errors from a real server', () => {
  const dir = tempDir({ after }, 'nbd-client-enospc');
  const server = new NbdServer({ exports: [{ name: 'vol', device: new FullDevice(MiB) }] });
  before(async () => {
    await server.listen({ socket: join(dir, 'nbd.sock') });
  });
  after(async () => server.close());

  test('ENOSPC rejects that write with NoSpaceError; the device goes on', async () => {
    const dev = await NbdClientDevice.connect({ uri: `nbd+unix:///vol?socket=${join(dir, 'nbd.sock')}` });
    try {
      const ok = dev.write(0, Buffer.alloc(4096, 1));
      await rejectsBlock(dev.write(2 * MiB, Buffer.alloc(4096, 2)), 'ENOSPC', 'the backing store is full', 'WRITE [2097152, +4096)');
      await ok;
      assert.ok((await dev.read(0, 4096)).equals(Buffer.alloc(4096, 1)));
      await rejectsBlock(dev.read(4 * MiB, 512), 'ERANGE');
    } finally {
      await dev.close();
    }
    await rejectsBlock(dev.read(0, 512), 'ESHUTDOWN', 'closed');
  });
});

describe('NBD client: a server that dies or stalls', () => {
  const dir = tempDir({ after }, 'nbd-client-dies');

  test('nbdkit killed (SIGKILL) mid-I/O: outstanding and later requests reject with EIO at once', async () => {
    const server = await startNbdkit(dir, join(dir, 'slow.sock'), ['--filter=delay', 'memory', '16M', 'delay-write=2']);
    try {
      const dev = await NbdClientDevice.connect({ uri: `nbd+unix:///?socket=${join(dir, 'slow.sock')}`, timeoutMs: 60_000 });
      const writes = Array.from({ length: 64 }, (_, i) => dev.write(i * 4096, Buffer.alloc(4096, i)));
      const settled = Promise.allSettled(writes);
      await new Promise((r) => setTimeout(r, 300));
      const t0 = Date.now();
      server.child.kill('SIGKILL');
      const results = await settled;
      assert.ok(Date.now() - t0 < 2000, 'rejected within 2 s of the kill');
      for (const r of results) {
        assert.equal(r.status, 'rejected');
        assert.ok(isBlockError(r.reason, 'EIO'), String(r.status === 'rejected' ? r.reason : ''));
      }
      await rejectsBlock(dev.read(0, 4096), 'EIO', 'the connection was lost');
      await dev.close();
    } finally {
      await server.stop();
    }
  });

  test('a request not answered within timeoutMs: ETIMEDOUT, and the device is failed', async () => {
    const server = await startNbdkit(dir, join(dir, 'delay.sock'), ['--filter=delay', 'memory', '16M', 'delay-read=5']);
    try {
      const dev = await NbdClientDevice.connect({ uri: `nbd+unix:///?socket=${join(dir, 'delay.sock')}`, timeoutMs: 500 });
      const t0 = Date.now();
      await rejectsBlock(dev.read(0, 4096), 'ETIMEDOUT', 'within 500 ms');
      const waited = Date.now() - t0;
      assert.ok(waited >= 450 && waited < 2000, `timed out after ${waited} ms`);
      await rejectsBlock(dev.write(0, Buffer.alloc(4096)), 'ETIMEDOUT');
      assert.match((await dev.health())!, /within 500 ms/);
      await dev.close();
    } finally {
      await server.stop('SIGKILL');
    }
  });
});
