// The array and its llbitmap together (llbitmap.md E8, E12, E16, and writes racing a rebuild):
// ordering of bitmap and data writes on every member, an interrupted resync leaving the rest
// NeedSync, bitmap read fallback across members, and application writes during recovery.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FileDevice } from '../../src/block/file-device.js';
import { FaultDevice } from '../../src/block/fault-device.js';
import { assembleArray, createArray, MdError } from '../../src/md/index.js';
import { memberFiles, pattern, readMember, tempDir } from './array-fixtures.js';
import { RecordingDevice, type IoRecord } from '../support/recording-device.js';

const CHUNK = 64 * 1024;
const DATA = 1 << 20;
const BITMAP = 8192;

/** The order in which writes and flushes completed on the members. */
interface Entry { dev: number; op: IoRecord['op']; offset: number; fua: boolean }

test('no data write reaches any member before its bitmap block is durable on every member', async (t) => {
  const paths = memberFiles(tempDir(t), 2, 64 << 20);
  const devs = await Promise.all(paths.map((p) => FileDevice.open(p)));
  const log: Entry[] = [];
  const rec = devs.map((d, dev) => new RecordingDevice(d, {
    onComplete: ({ op, offset, fua }) => {
      if (op === 'write' || op === 'flush') log.push({ dev, op, offset, fua });
    },
  }));
  const a = await createArray({ name: 'order', level: 1, members: rec.map((d, i) => ({ name: paths[i] as string, device: d })) });
  t.after(async () => {
    await a.stop();
    for (const d of devs) await d.close();
  });
  log.length = 0;
  await Promise.all([0, 7, 300].map((c) => a.write(c * CHUNK, pattern(c, 4096))));
  // The first data write on ANY member comes after a durable bitmap write on EVERY member.
  const firstData = log.findIndex((e) => e.op === 'write' && e.offset >= DATA);
  assert.ok(firstData > 0, 'data writes happened');
  const before = log.slice(0, firstData);
  for (const dev of [0, 1]) {
    const durable = before.some((e, i) => e.dev === dev && e.op === 'write' && e.offset >= BITMAP && e.offset < DATA &&
      (e.fua || before.slice(i + 1).some((x) => x.dev === dev && x.op === 'flush')));
    assert.ok(durable, `member ${dev}: durable bitmap write before the first data write: ${JSON.stringify(log)}`);
  }
});

test('a resync stopped part way leaves the chunks after the stop point NeedSync, and only those are synced next', async (t) => {
  const paths = memberFiles(tempDir(t), 2, 160 << 20);
  const a = await createArray({ name: 'abort', level: 1, members: paths, daemonSleep: 600 });
  const dirty = [1, 520, 1030, 1540, 2050];
  for (const c of dirty) await a.write(c * CHUNK, pattern(c, CHUNK));
  await a.abandon();
  const { array: b } = await assembleArray({ members: paths, syncSpeedMax: 1, syncSpeedMin: 1 });
  // At 1 KiB/s the pass syncs its first windows (two run at once) and then waits: stop it there.
  // Polled, not slept: however slow the machine, the pass waits there for minutes.
  let pos = 0;
  let done = 0;
  for (let i = 0; i < 3000 && done === 0; i++) {
    await new Promise((r) => setTimeout(r, 20));
    pos = b.status().sync?.position ?? 0;
    done = dirty.filter((c) => (c + 1) * CHUNK <= pos).length;
  }
  assert.ok(done >= 1 && done < dirty.length, `resync paused part way: at ${pos}, ${done} of ${dirty.length} dirty chunks behind it`);
  await b.stop();
  const { array: c } = await assembleArray({ members: paths, autoSync: false });
  t.after(() => c.stop());
  const counts = c.status().bitmap.counts;
  assert.equal(counts.needSync, dirty.length - done, 'chunks at or after the stop point stay NeedSync');
  assert.equal(counts.clean, done, 'the synced chunks ended Clean');
  c.startSync('resync');
  const s = await c.waitSync();
  assert.equal(s?.bytesSynced, (dirty.length - done) * CHUNK);
});

test('the bitmap is read from the next member when the first fails, and assembly fails when all do', async (t) => {
  const paths = memberFiles(tempDir(t), 2, 64 << 20);
  const a = await createArray({ name: 'bmio', level: 1, members: paths });
  await a.write(0, pattern(1, 4096));
  await a.stop();
  const devs = await Promise.all(paths.map((p) => FileDevice.open(p)));
  t.after(async () => { for (const d of devs) await d.close(); });
  const f = devs.map((d) => new FaultDevice(d));
  (f[0] as FaultDevice).failReads(BITMAP, DATA - BITMAP);
  const members = f.map((d, i) => ({ name: paths[i] as string, device: d }));
  const { array: b } = await assembleArray({ members });
  assert.equal(b.status().members[0]?.state, 'faulty', 'the member whose bitmap read failed is failed');
  assert.deepEqual(await b.read(0, 4096), pattern(1, 4096));
  await b.stop();

  (f[0] as FaultDevice).clearFaults();
  for (const d of f) d.failReads(BITMAP, DATA - BITMAP);
  await assert.rejects(assembleArray({ members, force: true }), (e: unknown) => e instanceof MdError && e.code === 'EIO');
});

test('application writes during a recovery land on the rebuilt member too', async (t) => {
  const paths = memberFiles(tempDir(t), 2, 64 << 20);
  const [m0, m1] = paths as [string, string];
  const a = await createArray({ name: 'race', level: 1, members: paths, syncSpeedMax: 20_000 });
  t.after(() => a.stop());
  for (let c = 0; c < 40; c++) await a.write(c * CHUNK * 20, pattern(c, CHUNK));
  await a.fail(m1);
  await a.remove(m1);
  const fresh = memberFiles(tempDir(t), 1, 64 << 20, 'n')[0] as string;
  await a.add(fresh);
  const writes: Promise<void>[] = [];
  for (let i = 0; i < 60; i++) {
    const c = (i * 7) % 40;
    writes.push(a.write(c * CHUNK * 20 + (i % 16) * 4096, pattern(1000 + i, 4096)));
    if (i % 10 === 0) await new Promise((r) => setTimeout(r, 20));
  }
  await Promise.all(writes);
  const s = await a.waitSync();
  assert.equal(s?.complete, true);
  for (let c = 0; c < 40; c++) {
    assert.deepEqual(readMember(fresh, c * CHUNK * 20, CHUNK), readMember(m0, c * CHUNK * 20, CHUNK), `chunk ${c * 20}`);
  }
});
