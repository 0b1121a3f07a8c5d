// An engine whose array has a member reached through its opener (a stand-in network here, the NBD
// client in production): what it reports as typed events when the member drops out, comes back
// and is recovered, and when it is fenced (writes answered with an error, the engine still up for
// status, its stop writing nothing).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { FileDevice } from '../../src/block/file-device.js';
import { controlRequest } from '../../src/engine/control/client.js';
import type { EngineEvent } from '../../src/engine/events.js';
import { runEngine } from '../../src/engine/volume-engine.js';
import { createArray } from '../../src/md/index.js';
import { readSuperblock } from '../../src/md/superblock.js';
import { memberFiles, pattern, tempDir } from '../md/array-fixtures.js';
import { RawPeer, request } from '../nbd/raw-client.js';
import { StandInNetwork } from '../support/standin-network.js';

const MEMBER = 64 << 20;
const TUNING = { returnIntervalMs: 40, returnTimeoutMs: 1000 };
const NBD_CMD_WRITE = 1;
const NBD_EIO = 5;

async function until(what: string, ok: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

test('engine: a remote member drops out, comes back and is recovered; a fence stops acknowledging and the stop writes nothing', async (t) => {
  const dir = tempDir(t);
  const [path] = memberFiles(dir, 1, MEMBER) as [string];
  const net = new StandInNetwork();
  net.addMember('test://b', MEMBER);
  const made = await createArray({ name: 'vol', level: 1, members: [path, 'test://b'], opener: net.opener, bitmapChunkSize: 4096 });
  await made.stop();

  const events: EngineEvent[] = [];
  let stop!: (why: string) => void;
  const stopped = new Promise<string>((resolve) => (stop = resolve));
  const socket = join(dir, 'nbd.sock');
  const control = join(dir, 'control.sock');
  const engine = runEngine({
    source: { kind: 'array', members: [path, 'test://b'], force: false, tuning: TUNING },
    address: { socket }, exportName: 'vol', readOnly: false, control, events: (e) => events.push(e), opener: net.opener,
  }, stopped);
  t.after(async () => {
    stop('test over');
    await engine.catch(() => undefined);
  });
  await until('serving', () => events.some((e) => e.type === 'serving'));
  const peer = await RawPeer.connect(socket);
  t.after(() => peer.socket.destroy());
  await peer.go('vol');
  let cookie = 0n;
  const write = async (offset: number, data: Buffer): Promise<number> => {
    peer.send(request(NBD_CMD_WRITE, ++cookie, offset, data.length), data);
    return (await peer.simpleReply()).error;
  };

  assert.equal(await write(0, pattern(1, 4096)), 0);
  net.unplug('reset');
  assert.equal(await write(8 << 20, pattern(2, 4096)), 0, 'acknowledged while the member is away');
  await until('member-failed', () => events.some((e) => e.type === 'member-failed'));
  assert.deepEqual(events.find((e) => e.type === 'member-failed'), { type: 'member-failed', member: 'test://b', reason: 'test://b: connection lost', watched: true });
  const away = await controlRequest(control, { op: 'status' });
  assert.equal(away.status?.members.find((m) => m.name === 'test://b')?.awaited, true);

  net.replug();
  await until('member-recovered', () => events.some((e) => e.type === 'member-recovered'));
  const back = events.find((e) => e.type === 'member-returned');
  assert.equal(back?.type === 'member-returned' && back.recovery, 'bitmap');
  const done = events.find((e) => e.type === 'member-recovered');
  assert.ok(done?.type === 'member-recovered' && done.complete && done.bytesSynced === back?.bytesToCopy, JSON.stringify(done));
  assert.equal((await controlRequest(control, { op: 'status' })).status?.state, 'active');

  net.fence('test://b');
  assert.equal(await write(12 << 20, pattern(3, 4096)), NBD_EIO, 'a fenced array answers EIO');
  assert.equal(await write(0, pattern(4, 4096)), NBD_EIO);
  const fenced = events.find((e) => e.type === 'fenced');
  assert.equal(fenced?.type === 'fenced' && fenced.member, 'test://b');
  const st = (await controlRequest(control, { op: 'status' })).status;
  assert.equal(st?.state, 'fenced', 'the engine is still up and says so');
  const local = await FileDevice.open(path, { readOnly: true });
  const atFence = (await readSuperblock(local, path)).events;
  await local.close();

  peer.socket.destroy();
  stop('SIGTERM');
  await engine;
  assert.deepEqual(events.at(-1), { type: 'stopped', fenced: true });
  const after = await FileDevice.open(path, { readOnly: true });
  t.after(() => after.close());
  assert.equal((await readSuperblock(after, path)).events, atFence, 'the stop wrote no superblock');
});
