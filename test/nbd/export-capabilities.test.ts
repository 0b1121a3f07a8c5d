// The NBD handshake advertises what the served device can do (BlockDevice capabilities), as real
// clients see it: nbdinfo's can_* flags and libnbd's nbdsh. NBD_FLAG_SEND_FAST_ZERO only where
// zeroing can be fast (`llraid serve --file` on a regular file, not an md array), a fast zero
// that succeeds where advertised, and a command or flag that was not advertised refused with
// EINVAL, the export unchanged.

import { readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { DeviceCapabilities } from '../../src/block/block-device.js';
import { FilterDevice } from '../../src/block/filter-device.js';
import { MemoryDevice } from '../../src/block/memory-device.js';
import { NbdServer } from '../../src/nbd/index.js';
import { buildCli } from '../support/cli.js';
import { tempDir } from '../support/temp-dir.js';
import { patternBytes, startServe, tool, type ServeProcess } from './helpers.js';

const MiB = 1024 * 1024;

interface ExportInfo {
  can_flush: boolean;
  can_fua: boolean;
  can_trim: boolean;
  can_zero: boolean;
  can_fast_zero: boolean;
  can_multi_conn: boolean;
}

async function exportInfo(uri: string): Promise<ExportInfo> {
  return (JSON.parse(await tool('nbdinfo', ['--json', uri])) as { exports: ExportInfo[] }).exports[0]!;
}

/** Runs `script` in nbdsh connected to `uri` (as `h`), with `MiB` defined; returns what it printed. */
function nbdsh(uri: string, script: string): Promise<string> {
  return tool('nbdsh', ['-u', uri, '-c', `MiB = ${MiB}\n${script}`]);
}

/** Prints `label ok` or `label ERRNO`. */
const ATTEMPT = `
def attempt(label, fn):
    try:
        fn()
        print(label, "ok")
    except nbd.Error as e:
        print(label, e.errno)
`;

describe('llraid serve --file on a sparse regular file', () => {
  const dir = tempDir({ after }, 'nbd-fast-zero');
  const file = join(dir, 'disk.img');
  const data = patternBytes(8 * MiB, 41);
  let serve: ServeProcess;

  before(async () => {
    await buildCli();
    writeFileSync(file, data);
    truncateSync(file, 16 * MiB);
    serve = await startServe(['--file', file, '--socket', join(dir, 'nbd.sock')]);
  });

  after(async () => {
    await serve?.stop();
  });

  test('advertises fast zero, and a fast zero of 2 MiB succeeds by punching a hole', async () => {
    const info = await exportInfo(serve.uri);
    assert.deepEqual([info.can_zero, info.can_fast_zero, info.can_trim], [true, true, true]);
    const before = statSync(file).blocks * 512;
    const out = await nbdsh(serve.uri, `${ATTEMPT}
print("can_fast_zero", h.can_fast_zero())
attempt("fast-2M", lambda: h.zero(2 * MiB, 1 * MiB, nbd.CMD_FLAG_FAST_ZERO))
print("zeroed", h.pread(2 * MiB, 1 * MiB) == bytes(2 * MiB))
`);
    assert.match(out, /^can_fast_zero True$/m, out);
    assert.match(out, /^fast-2M ok$/m, out);
    assert.match(out, /^zeroed True$/m, out);
    const disk = readFileSync(file);
    assert.ok(disk.subarray(MiB, 3 * MiB).equals(Buffer.alloc(2 * MiB)), 'the file holds zeroes there');
    assert.ok(disk.subarray(0, MiB).equals(data.subarray(0, MiB)) && disk.subarray(3 * MiB, 8 * MiB).equals(data.subarray(3 * MiB)), 'and its data around them');
    const now = statSync(file).blocks * 512;
    assert.ok(now <= before - 2 * MiB, `the range was punched out, not written: ${before} bytes allocated before, ${now} after`);
  });

  test('a fast zero that only writing could do fails with ENOTSUP and changes nothing; without the flag it is done', async () => {
    const out = await nbdsh(serve.uri, `${ATTEMPT}
attempt("fast-64k", lambda: h.zero(64 * 1024, 5 * MiB, nbd.CMD_FLAG_FAST_ZERO))
attempt("fast-no-hole", lambda: h.zero(2 * MiB, 4 * MiB, nbd.CMD_FLAG_FAST_ZERO | nbd.CMD_FLAG_NO_HOLE))
`);
    assert.match(out, /^fast-64k ENOTSUP$/m, out);
    assert.match(out, /^fast-no-hole ENOTSUP$/m, out);
    assert.ok(readFileSync(file).subarray(4 * MiB, 8 * MiB).equals(data.subarray(4 * MiB)), 'a refused fast zero changes nothing');
    const plain = await nbdsh(serve.uri, `${ATTEMPT}
attempt("plain-64k", lambda: h.zero(64 * 1024, 5 * MiB))
print("zeroed", h.pread(64 * 1024, 5 * MiB) == bytes(64 * 1024))
`);
    assert.match(plain, /^plain-64k ok$/m, plain);
    assert.match(plain, /^zeroed True$/m, plain);
  });
});

describe('llraid serve of an md array', () => {
  const dir = tempDir({ after }, 'nbd-no-fast-zero');
  let serve: ServeProcess;

  before(async () => {
    const cli = await buildCli();
    const members = ['a', 'b'].map((n) => join(dir, `${n}.img`));
    await tool(process.execPath, [cli, 'create', '-l', '1', '-N', 'nofast', '-z', '32M', ...members]);
    serve = await startServe(['--socket', join(dir, 'nbd.sock'), ...members]);
  });

  after(async () => {
    await serve?.stop();
  });

  test('does not advertise fast zero; a FAST_ZERO request sent anyway is EINVAL and changes nothing', async () => {
    const info = await exportInfo(serve.uri);
    assert.deepEqual([info.can_zero, info.can_fast_zero, info.can_trim, info.can_flush, info.can_fua, info.can_multi_conn], [true, false, true, true, true, true]);
    const out = await nbdsh(serve.uri, `${ATTEMPT}
print("can_fast_zero", h.can_fast_zero())
h.pwrite(b"\\x5a" * MiB, 2 * MiB)
h.set_strict_mode(0)
attempt("fast", lambda: h.zero(MiB, 2 * MiB, nbd.CMD_FLAG_FAST_ZERO))
print("kept", h.pread(MiB, 2 * MiB) == b"\\x5a" * MiB)
attempt("plain", lambda: h.zero(MiB, 2 * MiB))
print("zeroed", h.pread(MiB, 2 * MiB) == bytes(MiB))
`);
    assert.match(out, /^can_fast_zero False$/m, out);
    assert.match(out, /^fast EINVAL$/m, out);
    assert.match(out, /^kept True$/m, out);
    assert.match(out, /^plain ok$/m, out);
    assert.match(out, /^zeroed True$/m, out);
  });
});

/** A memory device that declares some capabilities away. */
class Declaring extends FilterDevice {
  constructor(private readonly declared: Partial<DeviceCapabilities>) {
    super(new MemoryDevice(4 * MiB));
  }
  override get capabilities(): DeviceCapabilities {
    return { ...super.capabilities, ...this.declared };
  }
}

describe('each capability a device declares is what clients are offered, and all they may use', () => {
  const dir = tempDir({ after }, 'nbd-caps');
  const sock = join(dir, 'nbd.sock');
  const exports = {
    all: new Declaring({}),
    none: new Declaring({ flush: false, fua: false, trim: false, writeZeroes: false, fastZero: false, multiConn: false }),
    // fastZero without writeZeroes: proto.md wants SEND_FAST_ZERO clear whenever WRITE_ZEROES is.
    fastOnly: new Declaring({ writeZeroes: false }),
  };
  const server = new NbdServer({ exports: Object.entries(exports).map(([name, device]) => ({ name, device })) });
  const uri = (name: string): string => `nbd+unix:///${name}?socket=${sock}`;

  before(() => server.listen({ socket: sock }));
  after(() => server.close());

  test('nbdinfo sees each declared capability as its flag', async () => {
    const all = await exportInfo(uri('all'));
    assert.deepEqual([all.can_flush, all.can_fua, all.can_trim, all.can_zero, all.can_fast_zero, all.can_multi_conn], [true, true, true, true, true, true]);
    const none = await exportInfo(uri('none'));
    assert.deepEqual([none.can_flush, none.can_fua, none.can_trim, none.can_zero, none.can_fast_zero, none.can_multi_conn], [false, false, false, false, false, false]);
    const fastOnly = await exportInfo(uri('fastOnly'));
    assert.deepEqual([fastOnly.can_zero, fastOnly.can_fast_zero], [false, false]);
  });

  test('a command or flag the export did not offer is EINVAL, and the export is unchanged', async () => {
    await exports.none.write(0, Buffer.alloc(MiB, 0x77));
    const out = await nbdsh(uri('none'), `${ATTEMPT}
h.set_strict_mode(0)
attempt("flush", lambda: h.flush())
attempt("fua-write", lambda: h.pwrite(b"x" * 4096, 0, nbd.CMD_FLAG_FUA))
attempt("trim", lambda: h.trim(MiB, 0))
attempt("zero", lambda: h.zero(MiB, 0))
attempt("write", lambda: h.pwrite(b"y" * 4096, MiB))
`);
    for (const label of ['flush', 'fua-write', 'trim', 'zero']) assert.match(out, new RegExp(`^${label} EINVAL$`, 'm'), out);
    assert.match(out, /^write ok$/m, out);
    assert.deepEqual(await exports.none.read(0, MiB), Buffer.alloc(MiB, 0x77));
  });
});
