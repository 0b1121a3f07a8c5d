// Benchmark of a replicated volume moving between nodes (issue 19), without a cluster: what the
// CSI driver does at NodeStage, done by hand with real processes. Two nodes a and b, each a
// network namespace (10.214.0.0/24, test/support/netns.ts) with a disk directory on /var/tmp and
// its `llraid member-serve` (TLS, certificates from test/support/certs.ts); a raid1 with one
// member on each node; the engine of whichever node owns the volume runs `llraid serve --epoch N`
// with its own member as a local path and the other node's as an nbds:// URI.
//  (a) clean move: the engine on one node writes and stops cleanly; the other node's engine
//      (epoch + 1) starts → time from its start to the first write and read served through its
//      NBD socket, and bytes resynced (0);
//  (b) crash: the engine is killed (SIGKILL) during random writes to a 16 MiB region; the other
//      node's engine starts with epoch + 1 → time to usable, bytes resynced (the chunks in
//      flight, in llbitmap's resync blocks), time until both members are in sync again;
//  (c) absence: b's engine runs while a's member service is stopped (a's node away); 1% of a
//      BENCH_MOVE_MIB volume is rewritten; a's member service starts again → the engine's return
//      check re-adds a's member from the bitmap: bytes recovered and time, against a full
//      recovery of the same volume onto a blank member on a (ratio ≤ 0.05).
// Run: npm run bench:move (env BENCH_MOVE_MIB (4096), BENCH_MOVE_SMALL_MIB (1024), BENCH_ROUNDS (3)).

import { execFile } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { NbdClientDevice } from '../src/nbd/index.js';
import { runCli } from '../test/support/cli.js';
import type { MemberServe } from '../test/support/member-serve.js';
import { makeCluster, statusOf, until, type Cluster, type Engine, type StatusJson } from '../test/remote/cluster.js';
import { median, printTable, ratio, verdict } from './table.js';

const run = promisify(execFile);
const MiB = 1024 * 1024;
const BIG_MIB = Number(process.env.BENCH_MOVE_MIB ?? 4096);
const SMALL_MIB = Number(process.env.BENCH_MOVE_SMALL_MIB ?? 1024);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
/** Issue 19's subnet: its tests and benches keep off issue 13's 10.213.0.0/24. */
const SUBNET = '10.214.0.';
const TOOL_ENV = { ...process.env, PATH: `/usr/bin:/bin:${process.env.PATH ?? ''}`, LIBNBD_DEBUG: '0' };
/** Engine settings of every run: a remote member's failure seen within 2 s, its return tried every 0.5 s, syncs unthrottled. */
const ENGINE_ARGS = ['--return-interval', '0.5', '--bitmap-daemon-sleep', '1', '--sync-speed-min', '2000000', '--sync-speed-max', '2000000'];

const cleanups: Array<() => Promise<void> | void> = [];
const owner = { after: (fn: () => Promise<void> | void) => void cleanups.push(fn) };

type Node = 'a' | 'b';
const other = (n: Node): Node => (n === 'a' ? 'b' : 'a');

interface Volume {
  tag: string;
  bytes: number;
  /** Each node's member: its file on that node and its device UUID (how the other node's engine names it). */
  member: Record<Node, { path: string; uuid: string }>;
  epoch: number;
}

class Bench {
  private readonly services = new Map<Node, MemberServe>();
  private seq = 0;

  constructor(readonly c: Cluster) {}

  async startService(node: Node): Promise<MemberServe> {
    const ms = await this.c.memberServe(node);
    this.services.set(node, ms);
    return ms;
  }

  async stopService(node: Node): Promise<void> {
    await this.services.get(node)?.stop();
    this.services.delete(node);
  }

  service(node: Node): MemberServe {
    const ms = this.services.get(node);
    if (!ms) throw new Error(`bench:move: no member service runs on ${node}`);
    return ms;
  }

  /** A raid1 with a's member first and b's second, created from a at epoch 1. */
  async volume(tag: string, mib: number): Promise<Volume> {
    const bytes = (mib + 2) * MiB;
    const pa = this.c.blank('a', `${tag}-a.img`, bytes);
    const pb = this.c.blank('b', `${tag}-b.img`, bytes);
    const made = await this.c.llraid('a', ['create', '-l', '1', '-N', tag, '-b', 'llbitmap', '--daemon-sleep', '1', ...this.c.remoteArgs('a', 1, 2), pa, this.service('b').uri(`file:${tag}-b.img`)], 120_000);
    if (made.code !== 0) throw new Error(`create ${tag}: ${made.stderr}`);
    const uuid = async (node: Node, path: string): Promise<string> => {
      const r = await this.c.llraid(node, ['examine', '--json', path]);
      if (r.code !== 0) throw new Error(`examine ${path}: ${r.stderr}`);
      return (JSON.parse(r.stdout) as { superblock: { deviceUuid: string } }).superblock.deviceUuid;
    };
    return { tag, bytes: mib * MiB, member: { a: { path: pa, uuid: await uuid('a', pa) }, b: { path: pb, uuid: await uuid('b', pb) } }, epoch: 1 };
  }

  /** `llraid serve` of `v` on `node` at epoch `epoch`: its own member local, the other's through its member service. */
  serve(node: Node, v: Volume, epoch: number, extra: string[] = []): Promise<Engine> {
    v.epoch = epoch;
    const members = (['a', 'b'] as const).map((n) => (n === node ? v.member[n].path : this.service(n).uri(v.member[n].uuid)));
    return this.c.serve(node, `${v.tag}-${node}-${++this.seq}`, [...this.c.remoteArgs(node, epoch, 2), ...ENGINE_ARGS, ...extra, ...members]);
  }

  /** Starts the engine and times it until a 4 KiB write and a read of it are served through its socket. */
  async takeOver(node: Node, v: Volume, epoch: number): Promise<{ engine: Engine; usableMs: number }> {
    const t0 = performance.now();
    const engine = await this.serve(node, v, epoch);
    const dev = await NbdClientDevice.connect({ uri: engine.uri });
    const probe = Buffer.alloc(4096, 0x42);
    const at = v.bytes - 4096;
    await dev.write(at, probe);
    await dev.flush();
    const back = await dev.read(at, 4096);
    const usableMs = performance.now() - t0;
    await dev.close();
    if (!Buffer.from(back).equals(probe)) throw new Error(`bench:move: ${v.tag} on ${node} read back other bytes than it wrote`);
    return { engine, usableMs };
  }
}

async function fio(uri: string, args: string[]): Promise<void> {
  await run('fio', ['--name=bench', '--ioengine=nbd', `--uri=${uri}`, ...args], { env: TOOL_ENV, maxBuffer: 16 * MiB });
}

/** Waits until the engine has both members in sync and no sync running or owed; its status then. */
async function inSync(c: Cluster, e: Engine, ms: number): Promise<StatusJson & { bytesSyncedTotal: number }> {
  return until('both members in sync and nothing to sync', async () => {
    const s = (await statusOf(c, e)) as StatusJson & { bytesSyncedTotal: number };
    return s.members.every((m) => m.state === 'in_sync') && s.sync === null && s.resyncPending === null ? s : undefined;
  }, ms);
}

async function cleanMoves(b: Bench): Promise<Array<{ from: Node; to: Node; usableMs: number; resynced: number; marked: number }>> {
  const v = await b.volume('move', SMALL_MIB);
  let node: Node = 'a';
  let engine = await b.serve(node, v, 1);
  const out = [];
  for (let round = 0; round < ROUNDS; round++) {
    process.stderr.write(`bench:move: clean move ${round + 1}/${ROUNDS}\n`);
    await fio(engine.uri, ['--rw=randwrite', '--bs=64k', '--iodepth=16', '--size=256M', `--offset=${(round % 3) * 256}M`, '--io_size=64M']);
    await engine.stop();
    const to = other(node);
    const { engine: next, usableMs } = await b.takeOver(to, v, v.epoch + 1);
    const s = await inSync(b.c, next, 120_000);
    const assembled = await next.waitForEvent('assembled');
    out.push({ from: node, to, usableMs, resynced: s.bytesSyncedTotal, marked: assembled.bitmap.markedChunks * assembled.bitmap.chunkSize });
    engine = next;
    node = to;
  }
  await engine.stop();
  return out;
}

/** Where round `round`'s writer writes before the crash: 16 MiB. */
const crashRegion = (round: number): { offset: number; bytes: number } => ({ offset: (128 + round * 64) * MiB, bytes: 16 * MiB });

/** llbitmap marks a whole io block of state (512 chunks) on an unclean stop: the resync bound of a region. */
function resyncBound(region: { offset: number; bytes: number }, chunkSize: number): number {
  const block = 512 * chunkSize;
  return (Math.ceil((region.offset + region.bytes) / block) - Math.floor(region.offset / block)) * block;
}

async function crashes(b: Bench): Promise<Array<{ from: Node; to: Node; usableMs: number; syncedMs: number; resynced: number; marked: number; bound: number }>> {
  const v = await b.volume('crash', SMALL_MIB);
  let node: Node = 'a';
  let engine = await b.serve(node, v, 1);
  const out = [];
  for (let round = 0; round < ROUNDS; round++) {
    process.stderr.write(`bench:move: crash ${round + 1}/${ROUNDS}\n`);
    // Random 4 KiB writes at QD16 to 16 MiB (at a different place each round), killed after 3 s.
    const region = crashRegion(round);
    const writer = fio(engine.uri, ['--rw=randwrite', '--bs=4k', '--iodepth=16', `--size=${region.bytes}`, `--offset=${region.offset}`, '--time_based', '--runtime=60']).catch(() => undefined);
    await sleep(3000);
    engine.proc.child.kill('SIGKILL');
    await engine.proc.exited;
    await writer;
    const to = other(node);
    const t0 = performance.now();
    const { engine: next, usableMs } = await b.takeOver(to, v, v.epoch + 1);
    const s = await inSync(b.c, next, 300_000);
    const syncedMs = performance.now() - t0;
    const assembled = await next.waitForEvent('assembled');
    out.push({
      from: node, to, usableMs, syncedMs, resynced: s.bytesSyncedTotal,
      marked: assembled.bitmap.markedChunks * assembled.bitmap.chunkSize, bound: resyncBound(region, s.bitmap?.chunkSize ?? 0),
    });
    engine = next;
    node = to;
  }
  await engine.stop();
  return out;
}

async function absence(b: Bench): Promise<{
  chunk: number; chunks: number; returnedMs: number; readdMs: number; copyMs: number; bytesToCopy: number; readdSynced: number; fullMs: number; fullSynced: number;
}> {
  const v = await b.volume('away', BIG_MIB);
  const engine = await b.serve('b', v, 2);
  process.stderr.write(`bench:move: filling ${BIG_MIB} MiB\n`);
  await fio(engine.uri, ['--rw=write', '--bs=1M', '--iodepth=16', `--size=${BIG_MIB}M`]);
  const chunk = (await statusOf(b.c, engine)).bitmap!.chunkSize;
  await until('the bitmap clean after the fill', async () => (((await statusOf(b.c, engine)).bitmap!.counts.dirty ?? 0) === 0 ? true : undefined), 120_000);

  // a's node goes away: its member service stops; b's engine fails a's member on its next write.
  await b.stopService('a');
  const events0 = (await engine.events()).length;
  const dev = await NbdClientDevice.connect({ uri: engine.uri });
  const chunks = Math.floor(v.bytes / chunk);
  const picked = new Set<number>();
  while (picked.size < Math.ceil(chunks / 100)) picked.add(Math.floor(Math.random() * chunks));
  const list = [...picked];
  const buf = Buffer.alloc(chunk, 0x6b);
  let next = 0;
  await Promise.all(Array.from({ length: 8 }, async () => {
    while (next < list.length) await dev.write(list[next++]! * chunk, buf);
  }));
  await dev.flush();
  await dev.close();
  await engine.waitForEvent('member-failed', 20_000, events0);

  // a is back: its member service starts; the return check re-adds a's member from the bitmap.
  await b.startService('a');
  // From the moment a's member service accepts connections again (its process start is the
  // node's return, not the recovery's).
  const backAt = performance.now();
  const returned = await engine.waitForEvent('member-returned', 60_000, events0);
  const returnedMs = performance.now() - backAt;
  const recovered = await engine.waitForEvent('member-recovered', 600_000, events0);
  const readdMs = performance.now() - backAt;
  const copyMs = Date.parse(recovered.time) - Date.parse(returned.time);

  // The same volume rebuilt in full onto a blank member on a.
  const blank = `${v.tag}-a-blank.img`;
  b.c.blank('a', blank, v.bytes + 2 * MiB);
  const events1 = (await engine.events()).length;
  for (const cmd of ['fail', 'remove']) {
    const r = await runCli([cmd, '--control', engine.control, returned.member]);
    if (r.code !== 0) throw new Error(`${cmd} ${returned.member}: ${r.stderr}`);
  }
  const fullAt = performance.now();
  const added = await runCli(['add', '--control', engine.control, b.service('a').uri(`file:${blank}`)]);
  if (added.code !== 0) throw new Error(`add: ${added.stderr}`);
  const full = await engine.waitForEvent('member-recovered', 1_800_000, events1);
  const fullMs = performance.now() - fullAt;
  await engine.stop();
  return {
    chunk, chunks: picked.size, returnedMs, readdMs, copyMs, bytesToCopy: returned.bytesToCopy, readdSynced: recovered.bytesSynced, fullMs, fullSynced: full.bytesSynced,
  };
}

async function main(): Promise<void> {
  const c = await makeCluster(owner, 'bench-move', ['a', 'b'], '/var/tmp', SUBNET);
  const b = new Bench(c);
  await b.startService('a');
  await b.startService('b');

  const moves = await cleanMoves(b);
  const crashed = await crashes(b);
  const away = await absence(b);

  const mib = (n: number): string => (n / MiB).toFixed(2);
  printTable(
    `Move of a raid1 (one member on each of two nodes, TLS over a veth) to the other node: ${SMALL_MIB} MiB volume, engine start to the first 4 KiB write + read served, ${ROUNDS} moves each way alternating`,
    ['move', 'time to usable ms (median)', 'min', 'max', 'bytes resynced (max)', 'MiB resynced', 'in sync after ms (median)', 'target (crash: ≤ the written region in llbitmap resync blocks)'],
    [
      ['clean (SIGTERM, then epoch+1 on the other node)', median(moves.map((m) => m.usableMs)), Math.min(...moves.map((m) => m.usableMs)), Math.max(...moves.map((m) => m.usableMs)),
        Math.max(...moves.map((m) => m.resynced)), mib(Math.max(...moves.map((m) => m.resynced))), '', verdict(Math.max(...moves.map((m) => m.resynced)), 0, 'most')],
      ['crash (SIGKILL mid-write, then epoch+1)', median(crashed.map((m) => m.usableMs)), Math.min(...crashed.map((m) => m.usableMs)), Math.max(...crashed.map((m) => m.usableMs)),
        Math.max(...crashed.map((m) => m.resynced)), mib(Math.max(...crashed.map((m) => m.resynced))), median(crashed.map((m) => m.syncedMs)),
        verdict(Math.max(...crashed.map((m) => m.resynced / m.bound)), 1, 'most')],
    ],
  );
  printTable(
    'Each crash: what the bitmap marked at assembly, what was resynced, and the bound (the 16 MiB written region in llbitmap resync blocks of 512 chunks)',
    ['round', 'time to usable ms', 'MiB marked', 'MiB resynced', 'MiB bound', 'in sync after ms'],
    crashed.map((m, i) => [`${i + 1}: ${m.from} → ${m.to}`, m.usableMs, mib(m.marked), mib(m.resynced), mib(m.bound), m.syncedMs]),
  );
  const written = away.chunks * away.chunk;
  printTable(
    `Absence: a's member service stopped while b's engine rewrote 1% of a ${BIG_MIB} MiB volume (${away.chunks} chunks of ${away.chunk / 1024} KiB), then started again; vs a full recovery of the same volume onto a blank member on a`,
    ['recovery', 'seconds', 'bytes copied', 'MiB', 'copied / written', 'target'],
    [
      ['re-add from the bitmap, from a\'s service answering', away.readdMs / 1000, away.readdSynced, mib(away.readdSynced), ratio(away.readdSynced, written), verdict(away.readdSynced / written, 1.1, 'most')],
      ['  of which: return noticed', away.returnedMs / 1000, '', '', '', ''],
      ['  of which: the copy', away.copyMs / 1000, '', '', '', ''],
      ['full recovery (add a blank member)', away.fullMs / 1000, away.fullSynced, mib(away.fullSynced), ratio(away.fullSynced, written), ''],
      ['re-add / full: bytes', ratio(away.readdSynced, away.fullSynced), '', '', '', verdict(away.readdSynced / away.fullSynced, 0.05, 'most')],
      ['re-add / full: time from the return', ratio(away.readdMs, away.fullMs), '', '', '', verdict(away.readdMs / away.fullMs, 0.05, 'most')],
      ['re-add / full: time of the copy', ratio(away.copyMs, away.fullMs), '', '', '', verdict(away.copyMs / away.fullMs, 0.05, 'most')],
    ],
  );
}

try {
  await main();
} finally {
  for (const fn of cleanups.reverse()) await fn();
}
