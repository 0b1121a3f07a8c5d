// Fencing a live NBD connection (NbdConnection.fence, what the member service does when an engine
// with a higher attach epoch takes a member), with libnbd's nbdsh as the client: the writes the
// device had started settle first, every one of them is answered ESHUTDOWN with the `fenced:`
// message, and nothing the client sends after the fence reaches the device.

import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryDevice } from '../../src/block/memory-device.js';
import { NbdExport, NbdServer, type AttachRequest, type ExportSource, type ServedConnection } from '../../src/nbd/index.js';
import { RecordingDevice } from '../support/recording-device.js';
import { tempDir } from '../support/temp-dir.js';
import { TOOL_ENV } from './helpers.js';

const SIZE = 16 * 1024 * 1024;
const KiB = 1024;

/** One export whose connections the test keeps, as the member service does. */
class KeepingSource implements ExportSource {
  readonly maxPayload = 32 * 1024 * 1024;
  readonly connections: ServedConnection[] = [];
  constructor(private readonly exp: NbdExport) {}
  list() {
    return Promise.resolve([{ name: this.exp.name, description: '' }]);
  }
  has(name: string) {
    return Promise.resolve(name === this.exp.name);
  }
  inspect() {
    return Promise.resolve({ export: this.exp });
  }
  attach(r: AttachRequest) {
    this.connections.push(r.connection);
    return Promise.resolve({ export: this.exp });
  }
}

async function waitFor(what: string, check: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

for (const structured of [true, false]) {
  test(`fence (${structured ? 'structured' : 'simple'} replies): started writes settle and fail ESHUTDOWN, later requests never reach the device`, async (t) => {
    const dir = tempDir(t, 'fence');
    const sock = join(dir, 'nbd.sock');
    const device = new RecordingDevice(new MemoryDevice(SIZE, { blockSize: 512 }));
    let open!: () => void;
    device.gate = { from: 0, to: 1024 * KiB, open: new Promise<void>((r) => (open = r)) };
    const source = new KeepingSource(new NbdExport({ name: 'm', device }));
    const server = new NbdServer({ exports: source });
    await server.listen({ socket: sock });
    t.after(() => server.close());

    // Four writes into the gated range, then (when told) four more outside it, then every result.
    const script = join(dir, 'client.py');
    writeFileSync(script, `
import nbd, sys, errno
h = nbd.NBD()
h.set_request_structured_replies(${structured ? 'True' : 'False'})
h.connect_uri("nbd+unix:///m?socket=${sock}")
cookies = [h.aio_pwrite(b"A" * 65536, i * 65536) for i in range(4)]
print("sent", flush=True)
sys.stdin.readline()
try:
    cookies += [h.aio_pwrite(b"B" * 65536, 2097152 + i * 65536) for i in range(4)]
except nbd.Error as e:
    print("later send failed", e.errno, flush=True)
for c in cookies:
    while True:
        try:
            if h.aio_command_completed(c):
                print("ok", flush=True)
                break
        except nbd.Error as e:
            print("error", errno.errorcode.get(e.errno, e.errno), flush=True)
            break
        try:
            h.poll(1)
        except nbd.Error as e:
            pass
`);
    const child = spawn('nbdsh', ['-c', `exec(open(${JSON.stringify(script)}).read())`], { env: { ...TOOL_ENV, LIBNBD_DEBUG: '1' }, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const exited = new Promise<number | null>((r) => child.once('exit', r));
    t.after(() => child.kill('SIGKILL'));

    await waitFor('four writes held at the device', () => device.touched.filter((r) => r.op === 'write').length === 4);
    assert.equal(source.connections.length, 1);
    let fenced = false;
    const fencing = source.connections[0]!.fence('fenced: member m taken with epoch 9').then(() => (fenced = true));
    child.stdin.end('go\n');
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(fenced, false, 'fence() waits for the writes the device has started');
    assert.equal(device.touched.length, 4, 'nothing sent after the fence reached the device');
    open();
    await fencing;
    assert.equal(await exited, 0, `nbdsh: ${out}\n${err}`);
    assert.equal(device.touched.length, 4, 'nothing sent after the fence reached the device');
    const results = out.trim().split('\n').filter((l) => l !== 'sent');
    assert.deepEqual(results.slice(0, 4), ['error ESHUTDOWN', 'error ESHUTDOWN', 'error ESHUTDOWN', 'error ESHUTDOWN'], out);
    for (const r of results.slice(4)) assert.match(r, /^(error E(SHUTDOWN|NOTCONN)|later send failed \d+)$/, out);
    if (structured) assert.match(err, /fenced: member m taken with epoch 9/, 'the structured error carries the message');
  });
}
