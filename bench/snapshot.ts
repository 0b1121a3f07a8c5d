// bench:snapshot — snapshots and changed-block tracking on the real plugin, its two disks on an XFS
// with reflink in a loop file (/var/tmp). A raid1 volume (4 GiB; BENCH_SNAPSHOT_GIB) is staged and
// half written through NBD, then:
//   1. CreateSnapshot while a client keeps writing 4 KiB blocks, BENCH_SNAPSHOT_ROUNDS times (5;
//      each but the last deleted again): the call's time (it returns at the engine's cut, not
//      ready to use), the time until ListSnapshots says it is ready (the engine's background
//      copy), the engine's write pause (its `thawed` event) and the longest write the client saw
//      during the call, medians against copying the volume (one member
//      file, every byte, as a copying snapshot would at the least), and where the call's time went
//      (the plugin's log line of each snapshot: its phases, medians);
//   2. 1% of the volume rewritten in 4 KiB blocks, a second snapshot, and the incremental backup a
//      tool makes from GetMetadataDelta: bytes it reads against the bytes changed and against a full
//      read of the volume, and the time of each read through a volume made from the snapshot.
// Run: npm run bench:snapshot (needs root, mkfs.xfs, nbdfuse; builds first).

import { execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { credentials, makeGenericClientConstructor, type Client, type ClientReadableStream } from '@grpc/grpc-js';
import { NbdClientDevice } from '../src/nbd/index.js';
import { serviceDefinition } from '../src/csi/proto.js';
import { blockCap, startPlugin, type Plugin } from '../test/csi/plugin-harness.js';
import { mountReflinkFs } from '../test/support/reflink-fs.js';
import { median, printTable, ratio, verdict } from './table.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const BLOCK = 4096;
const SIZE = Number(process.env.BENCH_SNAPSHOT_GIB ?? 4) * GiB;
const ROUNDS = Number(process.env.BENCH_SNAPSHOT_ROUNDS ?? 5);

type Range = { byte_offset: number; size_bytes: number };

const ms = (t0: bigint): number => Number(process.hrtime.bigint() - t0) / 1e6;
const span = (v: number[]): string => `${Math.min(...v).toFixed(0)}–${Math.max(...v).toFixed(0)} ms`;

function deltaRanges(plugin: Plugin, request: object): Promise<Range[]> {
  const def = serviceDefinition('SnapshotMetadata');
  const Ctor = makeGenericClientConstructor(def, 'SnapshotMetadata');
  const client = new Ctor(`unix://${plugin.socket}`, credentials.createInsecure()) as Client & Record<string, (r: object) => ClientReadableStream<unknown>>;
  return new Promise<Range[]>((resolve, reject) => {
    const out: Range[] = [];
    const call = client.GetMetadataDelta!.call(client, request);
    call.on('data', (p: { block_metadata: Range[] }) => out.push(...p.block_metadata.map((b) => ({ byte_offset: Number(b.byte_offset), size_bytes: Number(b.size_bytes) }))));
    call.on('error', reject);
    call.on('end', () => resolve(out));
  }).finally(() => client.close());
}

/** Waits, asking ListSnapshots as csi-snapshotter does, until snapshot `id` is ready to use. */
async function whenReady(id: string): Promise<void> {
  for (let i = 0; i < 6000; i++) {
    const e = (await plugin.controller.ListSnapshots({ snapshot_id: id })).entries as { snapshot: { ready_to_use: boolean } }[];
    if (e[0]?.snapshot.ready_to_use) return;
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error(`snapshot ${id} not ready after 30 s`);
}

const disk = await mountReflinkFs('bench-snapshot', `${Math.ceil((SIZE * 5) / GiB) + 2}G`);
const plugin = await startPlugin({ diskRoot: disk.dir, disks: 2 });
const staging = (id: string): string => path.join(plugin.kubeletDir, `staging-${id}`);
const stage = (id: string): Promise<object> => plugin.node.NodeStageVolume({ volume_id: id, staging_target_path: staging(id), volume_capability: blockCap() });
const unstage = (id: string): Promise<object> => plugin.node.NodeUnstageVolume({ volume_id: id, staging_target_path: staging(id) });
const connect = (id: string): Promise<NbdClientDevice> => NbdClientDevice.connect({ uri: `nbd+unix:///${id}?socket=${path.join(plugin.runDir, id, 'engine.sock')}` });

try {
  const created = await plugin.controller.CreateVolume({ name: 'bench-src', capacity_range: { required_bytes: SIZE }, volume_capabilities: [blockCap()], parameters: { level: '1', members: '2' } });
  const src = (created.volume as { volume_id: string }).volume_id;
  await stage(src);
  const dev = await connect(src);
  // Half the volume written: every other MiB, 16 writes in flight.
  process.stderr.write(`bench:snapshot: writing ${SIZE / 2 / MiB} MiB\n`);
  const chunk = Buffer.alloc(MiB, 0x6b);
  for (let at = 0; at < SIZE; at += 32 * MiB) {
    await Promise.all(Array.from({ length: 16 }, (_, i) => dev.write(at + i * 2 * MiB, chunk)));
  }
  await dev.flush();

  // 1. Snapshots under a steady writer of 4 KiB blocks.
  let writing = true;
  let longest = 0;
  let writes = 0;
  /**
   * Blocks the writer wrote once the last snapshot (the delta's base) had returned: after its
   * instant, so they are changes the delta must list (those that completed between the thaw and the
   * call's return are missed, which only makes the ratio below look worse).
   */
  let afterBase: Set<number> | undefined;
  const writer = (async () => {
    const b = Buffer.alloc(BLOCK, 0x11);
    for (let i = 0; writing; i++) {
      const t0 = process.hrtime.bigint();
      const block = (i * 7919) % (SIZE / BLOCK);
      await dev.write(block * BLOCK, b);
      longest = Math.max(longest, ms(t0));
      writes++;
      afterBase?.add(block);
    }
  })();
  const calls: number[] = [];
  /** From the call to ready_to_use (a staged volume's snapshot is copied by its engine after the cut). */
  const readies: number[] = [];
  const pauses: number[] = [];
  const longestWrites: number[] = [];
  let first = '';
  for (let round = 0; round < ROUNDS; round++) {
    await new Promise((r) => setTimeout(r, 500));
    longest = 0;
    const t0 = process.hrtime.bigint();
    const id = ((await plugin.controller.CreateSnapshot({ source_volume_id: src, name: `bench-1-${round}` })).snapshot as { snapshot_id: string }).snapshot_id;
    calls.push(ms(t0));
    await whenReady(id);
    readies.push(ms(t0));
    if (round === ROUNDS - 1) afterBase = new Set();
    await new Promise((r) => setTimeout(r, 300));
    longestWrites.push(longest);
    const events = (await fs.readFile(path.join(plugin.runDir, src, 'events.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { type: string; pausedMs?: number });
    pauses.push(events.filter((e) => e.type === 'thawed').at(-1)?.pausedMs ?? NaN);
    // The last one is the base of the delta (2.): the writer's blocks before it are not in the delta.
    if (first) await plugin.controller.DeleteSnapshot({ snapshot_id: first });
    first = id;
  }
  writing = false;
  await writer;
  const copied = (await fs.readFile(path.join(plugin.runDir, src, 'events.jsonl'), 'utf8')).trim().split('\n')
    .map((l) => JSON.parse(l) as { type: string; ms?: number; longestCloneMs?: number }).filter((e) => e.type === 'cut-copied');
  const longestClones = copied.map((e) => e.longestCloneMs ?? NaN);
  const snapMs = median(calls);
  const pauseMs = median(pauses);
  // The plugin's own account of each call: `...; total N ms: lock 0.1 ms, name lookup 2.0 ms, ...`.
  const phases = new Map<string, number[]>();
  for (const line of (await fs.readFile(plugin.logFile, 'utf8')).split('\n')) {
    const m = /of volume [0-9a-f]{32}: staged.*; total [\d.]+ ms: (.*)$/.exec(line);
    if (!m) continue;
    for (const part of m[1]!.split(', ')) {
      const p = /^(.*) ([\d.]+) ms$/.exec(part);
      if (p) phases.set(p[1]!, [...(phases.get(p[1]!) ?? []), Number(p[2])]);
    }
  }

  // The baseline: copying the volume's bytes once (one member file, no reflink), synced.
  const member = (await fs.readdir(plugin.disks[0]!)).find((n) => n.startsWith(`llraid-${src}`) && n.endsWith('.img'))!;
  const t1 = process.hrtime.bigint();
  execFileSync('cp', ['--reflink=never', '--sparse=never', path.join(plugin.disks[0]!, member), path.join(disk.dir, 'copy.img')]);
  execFileSync('sync', ['-f', path.join(disk.dir, 'copy.img')]);
  const copyMs = ms(t1);
  await fs.rm(path.join(disk.dir, 'copy.img'));

  // 2. 1% rewritten in 4 KiB blocks, a second snapshot, the delta.
  const rewritten = new Set<number>();
  for (let i = 0; rewritten.size < SIZE / BLOCK / 100; i++) rewritten.add((i * 104_729 + 7) % (SIZE / BLOCK));
  const order = [...rewritten];
  // What changed since the base: the 1% and what the writer wrote after the base's call returned.
  const blocks = new Set([...rewritten, ...(afterBase ?? [])]);
  const b2 = Buffer.alloc(BLOCK, 0x22);
  for (let i = 0; i < order.length; i += 32) await Promise.all(order.slice(i, i + 32).map((b) => dev.write(b * BLOCK, b2)));
  await dev.close();
  const second = ((await plugin.controller.CreateSnapshot({ source_volume_id: src, name: 'bench-2' })).snapshot as { snapshot_id: string }).snapshot_id;
  await whenReady(second);
  await unstage(src);
  const t2 = process.hrtime.bigint();
  const delta = await deltaRanges(plugin, { base_snapshot_id: first, target_snapshot_id: second, starting_offset: 0, max_results: 0 });
  const deltaMs = ms(t2);
  const deltaBytes = delta.reduce((n, r) => n + r.size_bytes, 0);
  const changed = blocks.size * BLOCK;

  // Reading the delta, and the whole volume, through a volume made from the second snapshot.
  const copy = ((await plugin.controller.CreateVolume({
    name: 'bench-copy', capacity_range: { required_bytes: SIZE }, volume_capabilities: [blockCap()], parameters: { level: '1', members: '2' },
    volume_content_source: { snapshot: { snapshot_id: second } },
  })).volume as { volume_id: string }).volume_id;
  await stage(copy);
  const reader = await connect(copy);
  const t3 = process.hrtime.bigint();
  for (let i = 0; i < delta.length; i += 32) await Promise.all(delta.slice(i, i + 32).map((r) => reader.read(r.byte_offset, r.size_bytes)));
  const incrementalMs = ms(t3);
  const t4 = process.hrtime.bigint();
  for (let at = 0; at < SIZE; at += 16 * MiB) await Promise.all(Array.from({ length: 16 }, (_, i) => reader.read(at + i * MiB, MiB)));
  const fullMs = ms(t4);
  await reader.close();
  await unstage(copy);

  const gib = SIZE / GiB;
  printTable(`bench:snapshot: raid1 of ${gib} GiB, 50% written, two disks on XFS with reflink (loop file on /var/tmp)`,
    ['row', 'value', 'baseline', 'ratio', 'target'], [
      [`snapshot under writes: CreateSnapshot call vs copying the volume (cp, ${gib} GiB); median of ${ROUNDS} (${span(calls)})`, `${snapMs.toFixed(0)} ms`, `${copyMs.toFixed(0)} ms`, ratio(snapMs, copyMs), verdict(snapMs / copyMs, 0.01, 'most')],
      [`time until ready_to_use (the engine's copy after the cut, polled with ListSnapshots) vs copying the volume; median (${span(readies)})`, `${median(readies).toFixed(0)} ms`, `${copyMs.toFixed(0)} ms`, ratio(median(readies), copyMs), ''],
      [`write pause (engine: writes held) vs copying the volume; median (${span(pauses)})`, `${pauseMs.toFixed(0)} ms`, `${copyMs.toFixed(0)} ms`, ratio(pauseMs, copyMs), verdict(pauseMs / copyMs, 0.01, 'most')],
      [`longest 4 KiB write the client saw from a call to 300 ms after it; median (${span(longestWrites)}; ${writes} writes)`, `${median(longestWrites).toFixed(0)} ms`, '', '', ''],
      [`longest single clone of the engine's copy (its thread held); median of ${copied.length} cuts (${span(longestClones)})`, `${median(longestClones).toFixed(1)} ms`, '', '', ''],
      [`incremental backup after 1% rewritten: bytes read vs bytes changed (${rewritten.size} blocks rewritten, ${blocks.size - rewritten.size} more the writer wrote after the base)`, `${(deltaBytes / MiB).toFixed(1)} MiB`, `${(changed / MiB).toFixed(1)} MiB`, ratio(deltaBytes, changed), verdict(deltaBytes / changed, 1.1, 'most')],
      ['the same vs a full read of the volume', `${(deltaBytes / MiB).toFixed(1)} MiB`, `${SIZE / MiB} MiB`, ratio(deltaBytes, SIZE), ''],
      [`GetMetadataDelta (${delta.length} ranges)`, `${deltaMs.toFixed(0)} ms`, '', '', ''],
      ['reading the delta vs reading the whole volume (NBD, from a volume of the snapshot)', `${incrementalMs.toFixed(0)} ms`, `${fullMs.toFixed(0)} ms`, ratio(incrementalMs, fullMs), ''],
    ]);
  printTable(`bench:snapshot: where a CreateSnapshot call's time went (the plugin's log; medians of ${ROUNDS} calls)`, ['phase', 'median', 'range'],
    [...phases].map(([k, v]) => [k, `${median(v).toFixed(1)} ms`, span(v)]));
  console.log(`load average: ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
} finally {
  await plugin.close();
  await disk.close();
}
