// A snapshot's cut (control ops cut, cut-status, cut-abort: engine/control/cut.ts) on a real raid1
// of member files on XFS with reflink: the cut replies after the drain, the copies are filled in
// the background while the array goes on being written, and the finished copies (renamed from
// `.cutting`) assemble, after the resync of their Dirty chunks, into the array exactly as it was
// at the cut: every write acknowledged before it, none after. A cut given up leaves no file; a
// target that is not a member, or a disk that cannot clone, is refused and the array writes on.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { controlRequest, EngineError } from '../../src/engine/control/client.js';
import { ControlServer } from '../../src/engine/control/server.js';
import { runEngine } from '../../src/engine/volume-engine.js';
import type { EngineEvent } from '../../src/engine/events.js';
import { assembleArray, createArray, type MdArray } from '../../src/md/index.js';
import { mountReflinkFs, type ReflinkFs } from '../support/reflink-fs.js';

const MiB = 1024 * 1024;
let disk: ReflinkFs;

before(async () => {
  disk = await mountReflinkFs('cut', '2G');
});

after(async () => {
  await disk?.close();
});

let n = 0;

async function served(t: { after(fn: () => Promise<void> | void): void }, dir = disk.dir, size = 128 * MiB): Promise<{ array: MdArray; members: string[]; control: string; seen: EngineEvent[]; server: ControlServer }> {
  const at = join(dir, `cut-${++n}`);
  await fs.mkdir(at);
  const members = [0, 1].map((i) => join(at, `m${i}.img`));
  for (const m of members) {
    await fs.writeFile(m, '');
    await fs.truncate(m, size);
  }
  const array = await createArray({ name: 'ext4:cut', level: 1, members, bitmap: 'llbitmap', autoSync: false });
  const control = join(at, 'control.sock');
  const seen: EngineEvent[] = [];
  const server = await ControlServer.listen(control, { array, onStop: () => undefined, events: (e) => seen.push(e) });
  t.after(async () => {
    await server.close();
    await array.stop();
    await server.cuts.settled();
    await fs.rm(at, { recursive: true, force: true });
  });
  return { array, members, control, seen, server };
}

/** Deterministic pseudo-random writes: [offset, length, fill byte]. */
function writes(seed: number, count: number, span: number): [number, number, number][] {
  let x = seed;
  const next = (): number => (x = (x * 1103515245 + 12345) % 2 ** 31);
  return Array.from({ length: count }, (_, i) => {
    const length = 4096 * (1 + (next() % 64));
    const offset = 4096 * (next() % ((span - length) / 4096));
    return [offset, length, 1 + ((seed + i) % 250)];
  });
}

/**
 * `count` writes as writes() makes them, but no two overlapping: each in its own slot of the span.
 * Writes in flight together may land in any order (as on any block device, and between a raid1's
 * members), so only disjoint ones have one outcome to check.
 */
function disjointWrites(seed: number, count: number, span: number): [number, number, number][] {
  const slot = Math.floor(span / count / 4096) * 4096;
  return writes(seed, count, slot).map(([o, l, b], i) => [i * slot + o, l, b]);
}

async function waitDone(control: string, id: string): Promise<void> {
  for (let i = 0; i < 400; i++) {
    const r = await controlRequest(control, { op: 'cut-status', id });
    if (r.cut?.state !== 'copying') {
      assert.equal(r.cut?.state, 'done', r.cut?.error);
      return;
    }
    await new Promise((res) => setTimeout(res, 25));
  }
  assert.fail(`cut ${id} still copying after 10 s`);
}

test('the copies of a cut hold the array as it was at the cut, while writes go on during the copy', async (t) => {
  const { array, members, control, seen } = await served(t);
  const span = Math.floor(array.size / 4096) * 4096;
  const shadow = Buffer.alloc(span);
  for (const [o, l, b] of writes(1, 200, span)) {
    await array.write(o, Buffer.alloc(l, b));
    shadow.fill(b, o, o + l);
  }
  const atCut = Buffer.from(shadow);
  const copies = members.map((m) => `${m}.snap`);
  const cut = await controlRequest(control, {
    op: 'cut', id: 'snap-1', timeoutMs: 5000, consistency: 'crash', targets: members.map((m, i) => ({ member: m, to: copies[i]! })),
  });
  assert.ok((cut.pausedMs ?? -1) >= 0, `paused ${cut.pausedMs} ms`);
  // Written while the copy is being made, some to ranges the copy has not reached yet; all at
  // once, so no two overlap.
  const after = disjointWrites(2, 300, span);
  await Promise.all(after.map(async ([o, l, b]) => array.write(o, Buffer.alloc(l, b))));
  for (const [o, l, b] of after) shadow.fill(b, o, o + l);
  await waitDone(control, 'snap-1');
  assert.deepEqual((await fs.readdir(join(members[0]!, '..'))).filter((f) => f.endsWith('.cutting')), [], 'no copy is left under its temporary name');
  assert.deepEqual(seen.filter((e) => e.type === 'cut' || e.type === 'cut-copied').map((e) => [e.type, (e as { ok?: boolean }).ok]), [['cut', undefined], ['cut-copied', true]]);
  assert.ok((await array.read(0, span)).equals(shadow), 'the array holds every write');

  const { array: copy, report } = await assembleArray({ members: copies });
  try {
    assert.equal(report.unclean, true, 'a crash-consistent cut assembles as after a crash');
    await copy.waitSync();
    assert.ok((await copy.read(0, span)).equals(atCut), 'the copy is the array at the cut');
  } finally {
    await copy.stop();
  }
});

test('a cut given up (cut-abort) leaves no file; the next cut may start', async (t) => {
  const { array, members, control } = await served(t, disk.dir, 512 * MiB);
  await array.write(0, Buffer.alloc(8 * MiB, 5));
  const targets = members.map((m) => ({ member: m, to: `${m}.snap` }));
  await controlRequest(control, { op: 'cut', id: 'snap-a', timeoutMs: 5000, consistency: 'crash', targets });
  const aborted = await controlRequest(control, { op: 'cut-abort', id: 'snap-a' });
  // A copy that had already finished when the abort came is done; one that had not is failed.
  const state = aborted.cut?.state;
  assert.ok(state === 'failed' || state === 'done', `state ${state}`);
  if (state === 'failed') {
    const left = (await fs.readdir(join(members[0]!, '..'))).filter((f) => f.includes('.snap'));
    assert.deepEqual(left, [], 'its files are removed');
  } else {
    for (const x of targets) await fs.rm(x.to);
  }
  await array.write(0, Buffer.alloc(4096, 6));
  await controlRequest(control, { op: 'cut', id: 'snap-b', timeoutMs: 5000, consistency: 'crash', targets });
  await assert.rejects(controlRequest(control, { op: 'cut', id: 'snap-c', timeoutMs: 5000, consistency: 'crash', targets }), (e: unknown) => e instanceof EngineError && e.code === 'EBUSY');
  await waitDone(control, 'snap-b');
  assert.equal((await controlRequest(control, { op: 'cut-status', id: 'nope' })).cut, null, 'an unknown cut is null');
});

test('a target that is not a member, or a disk that cannot clone, is refused; the array writes on', async (t) => {
  const { array, control } = await served(t);
  const stranger = join(disk.dir, 'stranger.img');
  await fs.writeFile(stranger, Buffer.alloc(4096));
  await assert.rejects(
    controlRequest(control, { op: 'cut', id: 'x', timeoutMs: 5000, targets: [{ member: stranger, to: `${stranger}.snap` }] }),
    (e: unknown) => e instanceof EngineError && e.code === 'EINVAL' && /not a member file/.test(e.message),
  );
  await assert.rejects(controlRequest(control, { op: 'cut', id: 'bad id!', timeoutMs: 5000, targets: [] }), (e: unknown) => e instanceof EngineError && e.code === 'EINVAL');
  await array.write(0, Buffer.alloc(4096, 1));

  const shm = await fs.mkdtemp('/dev/shm/llraid-cut-');
  try {
    const { array: a2, members: m2, control: c2 } = await served(t, shm, 16 * MiB);
    await assert.rejects(
      controlRequest(c2, { op: 'cut', id: 'y', timeoutMs: 5000, targets: m2.map((m) => ({ member: m, to: `${m}.snap` })) }),
      (e: unknown) => e instanceof EngineError && e.code === 'ENOTSUP',
    );
    assert.deepEqual((await fs.readdir(join(m2[0]!, '..'))).filter((f) => f.includes('.snap')), [], 'nothing is left');
    await a2.write(0, Buffer.alloc(4096, 2));
    assert.ok((await a2.read(0, 4096)).equals(Buffer.alloc(4096, 2)), 'not frozen: writes go on');
  } finally {
    t.after(() => fs.rm(shm, { recursive: true, force: true }));
  }
});

test('an engine stopped while a cut is being copied finishes the copy before it exits', async () => {
  const at = join(disk.dir, 'cut-stop');
  await fs.mkdir(at);
  try {
    const members = [0, 1].map((i) => join(at, `m${i}.img`));
    for (const m of members) {
      await fs.writeFile(m, '');
      await fs.truncate(m, 768 * MiB);
    }
    const created = await createArray({ name: 'ext4:cut-stop', level: 1, members, bitmap: 'llbitmap', autoSync: false });
    await created.write(0, Buffer.alloc(4 * MiB, 0x3c));
    await created.stop();
    const control = join(at, 'control.sock');
    const seen: EngineEvent[] = [];
    let stop!: (why: string) => void;
    const engine = runEngine({
      source: { kind: 'array', members, force: false, tuning: {} },
      address: { socket: join(at, 'nbd.sock') }, exportName: 'cut-stop', readOnly: false, control, events: (e) => seen.push(e),
    }, new Promise<string>((r) => (stop = r)));
    for (let i = 0; i < 200 && !seen.some((e) => e.type === 'serving'); i++) await new Promise((r) => setTimeout(r, 25));
    const copies = members.map((m) => `${m}.snap`);
    await controlRequest(control, { op: 'cut', id: 'stop-1', timeoutMs: 5000, consistency: 'crash', targets: members.map((m, i) => ({ member: m, to: copies[i]! })) });
    stop('SIGTERM');
    await engine;
    const copied = seen.find((e) => e.type === 'cut-copied') as { ok?: boolean } | undefined;
    assert.equal(copied?.ok, true, 'the copy finished');
    assert.ok(seen.findIndex((e) => e.type === 'cut-copied') < seen.findIndex((e) => e.type === 'stopped'), 'before the engine said it stopped');
    const { array: copy } = await assembleArray({ members: copies });
    try {
      await copy.waitSync();
      assert.ok((await copy.read(0, 4 * MiB)).equals(Buffer.alloc(4 * MiB, 0x3c)));
    } finally {
      await copy.stop();
    }
  } finally {
    await fs.rm(at, { recursive: true, force: true });
  }
});
