// Epoch fencing end to end (issue 13): engine 1 on node a runs a diskless raid1 whose members are
// on nodes b and c, attached with epoch 5, while a writer goes through it; engine 2 on node d
// assembles the same members with epoch 6. Each member service fences engine 1's connection
// before it answers engine 2, so engine 1 stops acknowledging at once (its client gets EIO, its
// status says fenced) and nothing it was asked to write after the fence reaches a member.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { runCli } from '../support/cli.js';
import { NbdClientDevice } from '../../src/nbd/index.js';
import { deviceUuidOf, examineJson, makeCluster, MiB, statusOf, until } from './cluster.js';
import { BLOCK, lostWrites, patternFor, startWriter } from './writer.js';

const SECTOR = 512;

test('fencing: a second engine with a higher epoch takes the members; the first stops acknowledging and writes nothing more', async (t) => {
  const c = await makeCluster(t, 'remote-fence', ['a', 'b', 'c', 'd']);
  const files = { b: c.blank('b', 'b.img', 64 * MiB), c: c.blank('c', 'c.img', 64 * MiB) };
  const services = { b: await c.memberServe('b'), c: await c.memberServe('c') };
  const created = await c.llraid('a', ['create', '-l', '1', '-N', 'vol', ...c.remoteArgs('a', 5), services.b.uri('file:b.img'), services.c.uri('file:c.img')]);
  assert.equal(created.code, 0, created.stderr);
  const members = [
    services.b.uri(await deviceUuidOf(c, 'b', files.b)),
    services.c.uri(await deviceUuidOf(c, 'c', files.c)),
  ];
  const sb = (await examineJson(c, 'b', files.b)).superblock;
  const dataOffset = sb.dataOffset * SECTOR;

  const one = await c.serve('a', 'one', [...c.remoteArgs('a', 5), ...members]);
  // Distinct blocks, each written once: a block's content names the write that put it there.
  const blocks = Array.from({ length: 8000 }, (_, i) => i * 2 * BLOCK);
  const writer = await startWriter(one.uri, blocks, { depth: 4, pauseMs: 1 });
  t.after(() => writer.device.close());
  await until('engine 1 acknowledging', () => (writer.acked().length >= 200 ? true : undefined));

  const two = await c.serve('d', 'two', [...c.remoteArgs('d', 6), ...members]);
  const fenced = await one.waitForEvent('fenced', 20_000).catch((e: Error) => { throw new Error(`${e.message}\nwriter: ${writer.acked().length} acked, ${writer.log.filter((w) => w.error).length} failed: ${writer.log.find((w) => w.error)?.error}\nb: ${services.b.stderr()}\nc: ${services.c.stderr()}`); });
  assert.match(fenced.reason, /fenced/);
  // The writer goes on after its first error, as a careless application would: every later
  // write must fail too.
  await until('engine 1 refusing writes', () => (writer.log.filter((w) => w.error !== undefined).length >= 50 ? true : undefined));
  await writer.stop();

  const failed = writer.log.filter((w) => w.error !== undefined);
  const acked = writer.acked();
  const firstError = Math.min(...failed.map((w) => w.failedAt!));
  assert.ok(acked.length >= 200);
  assert.ok(acked.every((w) => w.ackedAt! <= firstError), 'no write is acknowledged after the first refused one');
  const afterFence = writer.log.filter((w) => w.issuedAt > firstError);
  assert.ok(afterFence.length >= 40, 'writes went on being issued after the fence');
  assert.ok(afterFence.every((w) => w.error !== undefined), 'every write issued after the fence failed');
  assert.ok(failed.every((w) => /EIO|fenced|ESHUTDOWN/i.test(w.error!)), failed[0]?.error);
  const status1 = await statusOf(c, one);
  assert.notEqual(status1.fenced, null, 'engine 1 reports itself fenced');
  assert.match(status1.fenced!, /fenced/);

  // Engine 2 has the data engine 1 acknowledged, and none it was asked to write after the fence.
  const s2 = await until('engine 2 done with its resync', async () => {
    const s = await statusOf(c, two);
    return s.sync === null && s.resyncPending === null ? s : undefined;
  }, 60_000);
  assert.equal(s2.fenced, null);
  assert.deepEqual(s2.members.map((m) => m.state), ['in_sync', 'in_sync']);
  const reader = await NbdClientDevice.connect({ uri: two.uri });
  t.after(() => reader.close());
  assert.deepEqual(await lostWrites(acked, (o) => reader.read(o, BLOCK)), [], 'every write engine 1 acknowledged is on the members');
  for (const w of afterFence) {
    assert.ok(!(await reader.read(w.offset, BLOCK)).equals(patternFor(w.seq, w.offset)), `write ${w.seq}, issued after the fence, is not on the members`);
  }
  const check = await runCli(['check', '--json', '--control', two.control]);
  assert.equal(check.code, 0, check.stderr);
  assert.equal((JSON.parse(check.stdout) as { mismatchCount: number }).mismatchCount, 0);
  await reader.close();
  await writer.device.close();

  // Engine 1's stop writes nothing (it is fenced); engine 2 stops cleanly; the member files agree.
  await one.stop();
  assert.equal((await two.stop()).code, 0, two.proc.stderr());
  for (const node of ['b', 'c'] as const) {
    assert.equal(readFileSync(join(c.disks(node), '.llraid-epochs', `${node}.img`), 'utf8'), '6\n', `member on ${node} keeps epoch 6`);
  }
  const data = (f: string): Buffer => readFileSync(f).subarray(dataOffset, dataOffset + sb.dataSize * SECTOR);
  const b = data(files.b);
  assert.ok(b.equals(data(files.c)), 'the two member files hold the same data');
  for (const w of afterFence) assert.ok(!b.subarray(w.offset, w.offset + BLOCK).equals(patternFor(w.seq, w.offset)));
});
