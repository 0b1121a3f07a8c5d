// Benchmark of members on other nodes (issue 13), in network namespaces made for the run (node a
// runs the engines, node b the member service, TLS 1.3 over a veth; member files on /var/tmp):
//  1. raid1 with one local and one remote member against raid1 with both local: 1 MiB sequential
//     write, 4 KiB random read and write at QD32 (fio's nbd engine through the engine's unix
//     socket), with the CPU the engine and the member service spent per request;
//  2. llraid's NBD client against nbdcopy over the same veth and TLS (nbdkit serves the file:
//     nbdcopy cannot present an attach epoch, which member-serve requires);
//  3. the member service over its unix socket against over TLS/TCP (llraid's client, what TLS costs);
//  4. re-add after an absence in which 1% of the volume was written against a full recovery of the
//     same volume: time, and bytes on the wire (b's eth0 receive counter) against the chunks written.
// Run: npm run bench:remote (env BENCH_SECONDS, BENCH_SIZE_MIB, BENCH_READD_MIB, BENCH_ROUNDS).

import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { NbdClientDevice } from '../src/nbd/index.js';
import { runCli } from '../test/support/cli.js';
import { makeCluster, statusOf, until, type Cluster, type Engine } from '../test/remote/cluster.js';
import { median, printTable, ratio, verdict } from './table.js';
import { cpuSeconds } from './proc.js';

const run = promisify(execFile);
const MiB = 1024 * 1024;
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const SIZE_MIB = Number(process.env.BENCH_SIZE_MIB ?? 1024);
const READD_MIB = Number(process.env.BENCH_READD_MIB ?? 4096);
const TOOL_ENV = { ...process.env, PATH: `/usr/bin:/bin:${process.env.PATH ?? ''}`, LIBNBD_DEBUG: '0' };

/** The cleanups of the run, as a test's `after`. */
const cleanups: Array<() => Promise<void> | void> = [];
const owner = { after: (fn: () => Promise<void> | void) => void cleanups.push(fn) };


interface FioResult {
  value: number;
  ops: number;
}

async function fio(uri: string, rw: string, bs: string, depth: number, sizeMib: number): Promise<FioResult> {
  const { stdout } = await run('fio', [
    '--name=bench', '--ioengine=nbd', `--uri=${uri}`, `--rw=${rw}`, `--bs=${bs}`, `--iodepth=${depth}`,
    `--size=${sizeMib}M`, '--time_based', `--runtime=${SECONDS}`, '--output-format=json',
  ], { env: TOOL_ENV, maxBuffer: 16 * MiB });
  const job = (JSON.parse(stdout.slice(stdout.indexOf('{'))) as { jobs: Array<Record<'read' | 'write', { iops: number; bw_bytes: number; total_ios: number }>> }).jobs[0]!;
  const side = rw.includes('write') ? job.write : job.read;
  return { value: bs === '1M' ? side.bw_bytes / MiB : side.iops, ops: side.total_ios };
}

interface Workload {
  name: string;
  unit: string;
  rw: string;
  bs: string;
  depth: number;
  target: number;
}

const WORKLOADS: Workload[] = [
  { name: '1M seq write QD16', unit: 'MiB/s', rw: 'write', bs: '1M', depth: 16, target: 0.7 },
  { name: '4k randread QD32', unit: 'IOPS', rw: 'randread', bs: '4k', depth: 32, target: 0.95 },
  { name: '4k randwrite QD32', unit: 'IOPS', rw: 'randwrite', bs: '4k', depth: 32, target: 0.5 },
];

async function createAndServe(c: Cluster, tag: string, members: string[], extra: string[] = [], epoch = 1): Promise<Engine> {
  const remote = members.some((m) => m.startsWith('nbds://'));
  const made = await c.llraid('a', ['create', '-l', '1', '-N', tag, ...(remote ? c.remoteArgs('a', epoch, 5) : []), ...members]);
  if (made.code !== 0) throw new Error(`create ${tag}: ${made.stderr}`);
  const named = await Promise.all(members.map(async (m) => {
    if (!m.includes('/file:')) return m;
    const ex = await c.llraid('a', ['examine', '--json', ...c.remoteArgs('a', epoch, 5), m]);
    const uuid = (JSON.parse(ex.stdout) as { superblock: { deviceUuid: string } }).superblock.deviceUuid;
    return m.replace(/file:[^/]+$/, uuid);
  }));
  return c.serve('a', tag, [...(remote ? c.remoteArgs('a', epoch, 5) : []), ...extra, ...named]);
}

/** Sequential 1 MiB writes over the whole device at QD16, from inside node a (a script run there). */
const CLIENT_SCRIPT = join(import.meta.dirname, 'remote-client.ts');

async function clientSeqWrite(c: Cluster, uri: string, sizeMib: number, epoch: string): Promise<number> {
  const a = c.certs.node('a');
  const { stdout } = await c.net.exec('a', process.execPath, ['--import', 'tsx', CLIENT_SCRIPT, uri, String(sizeMib), epoch, a.client.cert, a.client.key, a.ca], { timeoutMs: 600_000 });
  return Number(stdout.trim());
}

async function rxBytes(c: Cluster, node: string): Promise<number> {
  const { stdout } = await c.net.exec(node, 'cat', ['/proc/net/dev']);
  const line = stdout.split('\n').find((l) => l.trim().startsWith('eth0:'))!;
  return Number(line.split(':')[1]!.trim().split(/\s+/)[0]);
}

async function main(): Promise<void> {
  // Member files on /var/tmp (a disk filesystem, through the page cache): the re-add part needs
  // three volumes of READD_MIB, more than this machine's RAM-backed tmpfs should hold.
  const c = await makeCluster(owner, 'bench-remote', ['a', 'b'], '/var/tmp');
  const shm = mkdtempSync('/var/tmp/llraid-bench-remote-src-');
  cleanups.push(() => rmSync(shm, { recursive: true, force: true }));
  const size = (SIZE_MIB + 2) * MiB;
  const ms = await c.memberServe('b');

  // 1. local + remote against local + local.
  c.blank('a', 'l1.img', size);
  c.blank('a', 'l2.img', size);
  c.blank('a', 'm1.img', size);
  c.blank('b', 'r1.img', size);
  const both = await createAndServe(c, 'locals', [join(c.disks('a'), 'l1.img'), join(c.disks('a'), 'l2.img')]);
  const mixed = await createAndServe(c, 'mixed', [join(c.disks('a'), 'm1.img'), ms.uri('file:r1.img')]);
  // Fill both volumes first so that reads read data and the bitmaps are past their first writes.
  for (const e of [both, mixed]) await run('fio', ['--name=fill', '--ioengine=nbd', `--uri=${e.uri}`, '--rw=write', '--bs=1M', '--iodepth=16', `--size=${SIZE_MIB}M`], { env: TOOL_ENV });
  const got = WORKLOADS.map(() => ({ both: [] as number[], mixed: [] as number[], cpuEngine: [] as number[], cpuService: [] as number[], cpuBoth: [] as number[] }));
  for (let round = 0; round < ROUNDS; round++) {
    process.stderr.write(`bench:remote: raid1 round ${round + 1}/${ROUNDS}\n`);
    for (const [i, w] of WORKLOADS.entries()) {
      for (const who of (round + i) % 2 === 0 ? (['both', 'mixed'] as const) : (['mixed', 'both'] as const)) {
        const e = who === 'both' ? both : mixed;
        const cpu0 = [cpuSeconds(e.proc.pid), cpuSeconds(ms.proc.pid)];
        const r = await fio(e.uri, w.rw, w.bs, w.depth, SIZE_MIB);
        const cpu = [cpuSeconds(e.proc.pid) - cpu0[0]!, cpuSeconds(ms.proc.pid) - cpu0[1]!];
        got[i]![who].push(r.value);
        if (who === 'mixed') {
          got[i]!.cpuEngine.push((cpu[0]! / r.ops) * 1e6);
          got[i]!.cpuService.push((cpu[1]! / r.ops) * 1e6);
        } else got[i]!.cpuBoth.push((cpu[0]! / r.ops) * 1e6);
      }
    }
  }
  await both.stop();
  await mixed.stop();
  printTable(
    `raid1 local + remote (TLS over veth) vs raid1 local + local: ${SIZE_MIB} MiB volume on /var/tmp, fio nbd through the engine's unix socket, ${SECONDS} s, median of ${ROUNDS}`,
    ['workload', 'unit', 'local+local', 'local+remote', 'ratio', 'target', 'CPU µs/op engine (l+l)', 'engine (l+r)', 'member service'],
    WORKLOADS.map((w, i) => {
      const g = got[i]!;
      const a = median(g.both);
      const b = median(g.mixed);
      return [w.name, w.unit, a, b, ratio(b, a), verdict(b / a, w.target, 'least'), median(g.cpuBoth), median(g.cpuEngine), median(g.cpuService)];
    }),
  );

  // 2 and 3. The client alone: llraid's client vs nbdcopy on nbdkit over TLS; member-serve over
  // its unix socket vs over TLS.
  c.blank('b', 'k.img', size);
  const nbdkit = c.net.spawn('b', 'nbdkit', ['--foreground', '--exit-with-parent', '-i', c.net.addr('b'), '-p', '10810', '--tls=require',
    `--tls-certificates=${c.certs.node('b').dir}`, '--tls-verify-peer', 'file', `file=${join(c.disks('b'), 'k.img')}`]);
  cleanups.push(() => void nbdkit.stop());
  await c.net.waitForPort('a', c.net.addr('b'), 10810);
  c.blank('b', 'c.img', size);
  const source = join(shm, 'source.img');
  await run('dd', ['if=/dev/urandom', `of=${source}`, 'bs=1M', `count=${SIZE_MIB}`], { env: TOOL_ENV });
  const kitUri = `nbds://${c.net.addr('b')}:10810/`;
  const tlsDir = c.certs.node('a').dir;
  const copy: number[] = [];
  const client: number[] = [];
  const unix: number[] = [];
  const tcp: number[] = [];
  // The member-serve export of c.img: by file name (a blank file has no device UUID).
  const memberTcp = ms.uri('file:c.img');
  const memberUnix = `nbd+unix:///file:c.img?socket=${join(c.dir, 'ms-b.sock')}`;
  for (let round = 0; round < ROUNDS; round++) {
    process.stderr.write(`bench:remote: client round ${round + 1}/${ROUNDS}\n`);
    const t0 = performance.now();
    await c.net.exec('a', 'nbdcopy', ['--no-extents', '--request-size=1048576', '--requests=16', '--connections=1', source, `${kitUri}?tls-certificates=${tlsDir}`], { timeoutMs: 600_000 });
    copy.push(SIZE_MIB / ((performance.now() - t0) / 1000));
    client.push(await clientSeqWrite(c, kitUri, SIZE_MIB, '-'));
    tcp.push(await clientSeqWrite(c, memberTcp, SIZE_MIB, '1'));
    unix.push(await clientSeqWrite(c, memberUnix, SIZE_MIB, '1'));
  }
  printTable(
    `NBD client alone: 1 MiB sequential writes of ${SIZE_MIB} MiB at QD16, from node a over the veth, median of ${ROUNDS}`,
    ['path', 'MiB/s', 'ratio', 'target'],
    [
      ['nbdcopy -C 1 → nbdkit (TLS)', median(copy), '', ''],
      ['llraid client → nbdkit (TLS)', median(client), ratio(median(client), median(copy)), verdict(median(client) / median(copy), 0.8, 'least')],
      ['llraid client → member-serve (unix socket, plain)', median(unix), '', ''],
      ['llraid client → member-serve (TLS over TCP)', median(tcp), ratio(median(tcp), median(unix)), 'TLS/unix'],
    ],
  );

  // 4. Re-add after an absence vs a full recovery, on a READD_MIB volume.
  const big = (READD_MIB + 2) * MiB;
  c.blank('a', 'ra.img', big);
  c.blank('b', 'rb.img', big);
  c.blank('b', 'rb2.img', big);
  const vol = await createAndServe(c, 'readd', [join(c.disks('a'), 'ra.img'), ms.uri('file:rb.img')], ['--member-timeout', '1', '--return-interval', '0.5', '--bitmap-daemon-sleep', '1', '--sync-speed-min', '2000000', '--sync-speed-max', '2000000'], 2);
  process.stderr.write(`bench:remote: filling ${READD_MIB} MiB\n`);
  await run('fio', ['--name=fill', '--ioengine=nbd', `--uri=${vol.uri}`, '--rw=write', '--bs=1M', '--iodepth=16', `--size=${READD_MIB}M`], { env: TOOL_ENV, maxBuffer: 16 * MiB });
  const status0 = await statusOf(c, vol);
  const chunk = status0.bitmap!.chunkSize;
  await until('the bitmap clean after the fill', async () => {
    const s = await statusOf(c, vol);
    return (s.bitmap!.counts.dirty ?? 0) === 0 ? true : undefined;
  }, 120_000);
  const dev = await NbdClientDevice.connect({ uri: vol.uri });
  const chunks = Math.floor((READD_MIB * MiB) / chunk);
  const toWrite = Math.ceil(chunks / 100);
  const picked = new Set<number>();
  while (picked.size < toWrite) picked.add(Math.floor(Math.random() * chunks));
  await c.net.partition('b');
  const events0 = (await vol.events()).length;
  const buf = Buffer.alloc(chunk, 0x6b);
  let next = 0;
  const list = [...picked];
  await Promise.all(Array.from({ length: 8 }, async () => {
    while (next < list.length) await dev.write(list[next++]! * chunk, buf);
  }));
  await vol.waitForEvent('member-failed', 20_000, events0);
  await dev.close();
  const rx0 = await rxBytes(c, 'b');
  const healAt = performance.now();
  await c.net.heal('b');
  const returned = await vol.waitForEvent('member-returned', 30_000, events0);
  const recovered = await vol.waitForEvent('member-recovered', 600_000, events0);
  const readdMs = performance.now() - healAt;
  // The copy alone, from the member's return to its recovery (the engine's event times): what a
  // full recovery, timed from the add, is compared with; the heal-to-return wait is the return
  // check's interval, a setting.
  const copyMs = Date.parse(recovered.time) - Date.parse(returned.time);
  const readdWire = (await rxBytes(c, 'b')) - rx0;
  // A full recovery of the same volume onto a blank member on the same node.
  const events1 = (await vol.events()).length;
  const fail = await runCli(['fail', '--control', vol.control, returned.member]);
  const removed = await runCli(['remove', '--control', vol.control, returned.member]);
  if (fail.code !== 0 || removed.code !== 0) throw new Error(`fail/remove: ${fail.stderr} ${removed.stderr}`);
  const rx1 = await rxBytes(c, 'b');
  const fullAt = performance.now();
  const added = await runCli(['add', '--control', vol.control, ms.uri('file:rb2.img')]);
  if (added.code !== 0) throw new Error(`add: ${added.stderr}`);
  const full = await vol.waitForEvent('member-recovered', 1_200_000, events1);
  const fullMs = performance.now() - fullAt;
  const fullWire = (await rxBytes(c, 'b')) - rx1;
  await vol.stop();
  const written = picked.size * chunk;
  printTable(
    `Re-add after an absence in which 1% of a ${READD_MIB} MiB volume was written (${picked.size} chunks of ${chunk / 1024} KiB), vs a full recovery of the same volume`,
    ['recovery', 'seconds', 'bytes to copy', 'bytes synced', 'bytes on the wire (b eth0 rx)', 'wire / written chunks', 'target'],
    [
      ['re-add (bitmap), from the heal', readdMs / 1000, returned.bytesToCopy, returned.bytesToCopy, readdWire, ratio(readdWire, written), verdict(readdWire / written, 1.1, 'most')],
      ['re-add (bitmap), the copy alone', copyMs / 1000, '', '', '', '', ''],
      ['full recovery (add)', fullMs / 1000, '', full.bytesSynced, fullWire, ratio(fullWire, written), ''],
      ['re-add / full, from the heal', ratio(readdMs, fullMs), '', '', ratio(readdWire, fullWire), '', verdict(readdMs / fullMs, 0.05, 'most')],
      ['re-add / full, the copy alone', ratio(copyMs, fullMs), '', '', '', '', verdict(copyMs / fullMs, 0.05, 'most')],
    ],
  );
}

try {
  await main();
} finally {
  for (const fn of cleanups.reverse()) await fn();
}
