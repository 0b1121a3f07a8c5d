// Benchmark of PR_SET_IO_FLUSHER (DESIGN.md §6, src/engine/io-flusher.ts) under memory pressure:
// an engine whose parent set the flag against one whose parent did not, alternating in the same
// run, each serving a raid1 that the same host's kernel mounts through nbd-client while a memory
// hog holds nearly all of a small guest's RAM and dd fills the filesystem. The flag needs
// CAP_SYS_RESOURCE and the kernel NBD client needs the nbd module, so everything runs inside
// /work/shared/tools/kernel-vm; bench/io-flusher-guest.ts is the guest side. Prints a row per
// round and a row per mode, then what they show. A benchmark, not a test: it fails only when it
// cannot run.
// Run: npm run bench:io-flusher (env BENCH_FLUSHER_ROUNDS, BENCH_FLUSHER_MEM_MIB,
// BENCH_FLUSHER_WRITE_MIB, BENCH_FLUSHER_HEADROOM_MIB, BENCH_FLUSHER_TIMEOUT_S; KERNEL_VM).

import { spawn } from 'node:child_process';
import { createWriteStream, existsSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { median, printTable, type Cell } from './table.js';
import type { GuestConfig, Mode, RoundResult } from './io-flusher-guest.js';

const ROOT = new URL('..', import.meta.url).pathname;
const VM = process.env.KERNEL_VM ?? resolve(ROOT, '../shared/tools/kernel-vm');
const MEM_MIB = Number(process.env.BENCH_FLUSHER_MEM_MIB ?? 512);
const CPUS = 2;
// Twice the guest's RAM: the page cache cannot hold the file, so writeback must go on through
// the engine while the hog leaves it almost no room.
const WRITE_MIB = Number(process.env.BENCH_FLUSHER_WRITE_MIB ?? 2 * MEM_MIB);
const cfg: GuestConfig = {
  rounds: Number(process.env.BENCH_FLUSHER_ROUNDS ?? 2),
  referenceRounds: Number(process.env.BENCH_FLUSHER_REFERENCE_ROUNDS ?? 1),
  volumeMiB: Math.max(1536, WRITE_MIB + 512),
  writeMiB: WRITE_MIB,
  headroomMiB: Number(process.env.BENCH_FLUSHER_HEADROOM_MIB ?? 64),
  timeoutSec: Number(process.env.BENCH_FLUSHER_TIMEOUT_S ?? 300),
  hungTaskSec: 10,
};
const MODES: Mode[] = ['flag', 'no flag'];

interface GuestResult {
  rounds: RoundResult[];
  kernel?: string;
  memTotalMiB?: number;
  ok?: boolean;
  error?: string;
}

async function main(): Promise<void> {
  if (!existsSync(VM)) throw new Error(`expected kernel-vm at ${VM} (set KERNEL_VM): the flag needs CAP_SYS_RESOURCE and the NBD client the nbd module, which only its guest has`);
  if (!existsSync(join(ROOT, 'dist/src/cli/bin.cjs'))) throw new Error('expected the built CLI in dist/: run npm run build first');
  // Outside /tmp, which the guest replaces with its own tmpfs.
  const dir = mkdtempSync('/var/tmp/llraid-bench-io-flusher-');
  const resultFile = join(dir, 'result.json');
  const consoleFile = join(dir, 'console.txt');
  const disk = join(dir, 'disk.img');
  const started = performance.now();
  try {
    // Sparse: the guest makes an ext4 on it and the two member files of the raid1 there.
    writeFileSync(disk, '');
    truncateSync(disk, (2 * cfg.volumeMiB + 512) * 1024 * 1024);
    const vmTimeout = (cfg.rounds + cfg.referenceRounds) * MODES.length * (cfg.timeoutSec + 300) + 600;
    process.stderr.write(`bench: booting a ${MEM_MIB} MiB, ${CPUS}-CPU guest for ${cfg.referenceRounds} reference and ${cfg.rounds} pressure round(s) of each mode (~5 min a round pair; at most ${Math.round(vmTimeout / 60)} min)\n`);
    const vm = spawn(VM, ['--mem', String(MEM_MIB), '--cpus', String(CPUS), '--timeout', String(vmTimeout), '--disk', disk, '--rw', dir, '--',
      'node', '--import', 'tsx', 'bench/io-flusher-guest.ts', resultFile, JSON.stringify(cfg)], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    const consoleLog = createWriteStream(consoleFile);
    vm.stderr.pipe(consoleLog, { end: false });
    // kernel-vm prints the guest's console once the guest is done; kept for the error message.
    vm.stdout.pipe(consoleLog, { end: false });
    const code = await new Promise<number | null>((r) => vm.once('exit', r));
    consoleLog.end();
    if (!existsSync(resultFile)) {
      const tail = readFileSync(consoleFile, 'utf8').split('\n').slice(-40).join('\n');
      throw new Error(`the guest wrote no result (kernel-vm exit ${code}); its console ended:\n${tail}`);
    }
    const result = JSON.parse(readFileSync(resultFile, 'utf8')) as GuestResult;
    report(result, (performance.now() - started) / 1000);
    if (result.rounds.length === 0) throw new Error(`no round ran in the guest: ${result.error ?? 'no error given'}`);
    if (result.error !== undefined) process.stderr.write(`bench: the guest stopped early: ${result.error}\n`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function report(r: GuestResult, seconds: number): void {
  const ms = (v: number) => (v >= 10_000 ? `${(v / 1000).toFixed(0)} s` : `${Math.round(v)}`);
  const int = (n: number) => String(Math.round(n));
  const label = (x: RoundResult) => (x.hogMiB === 0 ? `ref ${x.round}` : int(x.round));
  printTable(
    `PR_SET_IO_FLUSHER under memory pressure: raid1 engine -> nbd-client -> ext4, dd of ${cfg.writeMiB} MiB (conv=fsync) in a ${r.memTotalMiB ?? MEM_MIB} MiB guest ` +
      `(kernel ${r.kernel ?? '?'}, ${CPUS} emulated CPUs, no swap), the hog leaving ${cfg.headroomMiB} MiB ("ref": no hog), ${cfg.timeoutSec} s limit`,
    ['mode', 'round', 'flagged threads engine / nbd-client', 'hog MiB', 'dirty limit MiB', 'write', 's', 'MB/s', 'status ms p50/p99/max', 'nbd read ms p50/p99/max',
      'kernel failed nbd I/O at s', 'hung tasks', 'OOM kills', 'engine RSS MiB', 'PSI full s'],
    r.rounds.map((x): Cell[] => [
      x.mode, label(x), `${x.engineFlag} / ${x.clientFlag}`, int(x.hogMiB), int(x.dirtyThresholdMiB),
      x.completed ? 'done' : 'FAILED', x.seconds, x.completed ? x.mbPerSec : '-',
      `${ms(x.control.p50)} / ${ms(x.control.p99)} / ${ms(x.control.max)}`,
      `${ms(x.nbdRead.p50)} / ${ms(x.nbdRead.p99)} / ${ms(x.nbdRead.max)}${x.nbdRead.failures > 0 ? ` (${x.nbdRead.failures} failed)` : ''}`,
      x.firstNbdErrorSec === null ? '-' : int(x.firstNbdErrorSec), int(x.hungTasks.length), x.oomKills.length === 0 ? '0' : `${x.oomKills.length} (${[...new Set(x.oomKills)].join(',')})`,
      x.engineRssMaxMiB, x.psiFullSec,
    ]));
  printTable('Where the engine\'s threads were blocked (kernel wait channel, thread samples once a second during the write; idle waits left out)',
    ['mode', 'round', 'wait channels'],
    r.rounds.map((x): Cell[] => [x.mode, label(x), Object.entries(x.engineWaits).map(([w, n]) => `${w} ${n}`).join(', ') || '-']));

  const groups = [false, true].flatMap((hog) => MODES.map((mode) => summarise(mode, hog, r.rounds.filter((x) => x.mode === mode && (x.hogMiB > 0) === hog))))
    .filter((g) => g.rounds > 0);
  printTable('Per mode (median of finished writes; worst latency of all rounds)',
    ['mode', 'pressure', 'writes done', 'median s', 'median MB/s', 'status p99 ms (median)', 'status max ms', 'nbd read max ms', 'rounds nbd I/O failed', 'hung tasks', 'OOM kills', 'max engine RSS MiB'],
    groups.map((g): Cell[] => [g.mode, g.hog ? 'hog' : 'none', `${g.done}/${g.rounds}`, g.seconds ?? '-', g.mbPerSec ?? '-', ms(g.controlP99), ms(g.controlMax), ms(g.nbdMax),
      `${g.nbdFailed}/${g.rounds}`, int(g.hung), int(g.oom), g.rss]));
  console.log(`\n${conclusion(groups)}`);
  for (const x of r.rounds.filter((y) => !y.completed || y.hungTasks.length > 0)) {
    const hung = x.hungTasks.length === 0 ? '' : `; hung-task reports for ${[...new Set(x.hungTasks)].join(', ')}`;
    console.log(`\n${x.mode}, ${x.hogMiB === 0 ? 'reference ' : ''}round ${x.round}: ${x.outcome}${hung}. Kernel log:`);
    for (const line of x.kernelLog.slice(0, 8)) console.log(`  ${line}`);
  }
  console.log(`\nbench: ${(seconds / 60).toFixed(1)} min in all (${r.rounds.length} rounds, software-emulated guest)`);
}

interface ModeSummary {
  mode: Mode;
  hog: boolean;
  rounds: number;
  done: number;
  seconds: number | undefined;
  mbPerSec: number | undefined;
  controlP99: number;
  controlMax: number;
  nbdMax: number;
  /** Rounds in which the kernel timed out or failed a request on /dev/nbd0. */
  nbdFailed: number;
  hung: number;
  oom: number;
  rss: number;
  /** Median of the rounds' global dirty-page limits, MiB. */
  dirtyLimit: number;
  /** Engine thread samples in balance_dirty_pages (dirty-page throttling), of all busy samples. */
  throttled: number;
  busy: number;
}

function summarise(mode: Mode, hog: boolean, rs: RoundResult[]): ModeSummary {
  const done = rs.filter((x) => x.completed);
  const sum = (f: (x: RoundResult) => number) => rs.reduce((n, x) => n + f(x), 0);
  return {
    mode,
    hog,
    rounds: rs.length,
    done: done.length,
    seconds: done.length > 0 ? median(done.map((x) => x.seconds)) : undefined,
    mbPerSec: done.length > 0 ? median(done.map((x) => x.mbPerSec)) : undefined,
    controlP99: rs.length > 0 ? median(rs.map((x) => x.control.p99)) : 0,
    controlMax: Math.max(0, ...rs.map((x) => x.control.max)),
    nbdMax: Math.max(0, ...rs.map((x) => x.nbdRead.max)),
    nbdFailed: rs.filter((x) => x.firstNbdErrorSec !== null).length,
    hung: sum((x) => x.hungTasks.length),
    oom: sum((x) => x.oomKills.length),
    rss: Math.max(0, ...rs.map((x) => x.engineRssMaxMiB)),
    dirtyLimit: rs.length > 0 ? median(rs.map((x) => x.dirtyThresholdMiB)) : 0,
    throttled: sum((x) => x.engineWaits.balance_dirty_pages ?? 0),
    busy: sum((x) => Object.values(x.engineWaits).reduce((a, b) => a + b, 0)),
  };
}

/** What the numbers show, in words the numbers choose (nothing here is a pass or a fail). */
function conclusion(groups: ModeSummary[]): string {
  const find = (mode: Mode, hog: boolean) => groups.find((g) => g.mode === mode && g.hog === hog);
  const say = (g: ModeSummary | undefined) => (g === undefined ? 'not run' :
    `${g.done}/${g.rounds} writes done${g.mbPerSec === undefined ? '' : ` (median ${g.mbPerSec.toFixed(1)} MB/s)`}, ` +
    `worst NBD read ${(g.nbdMax / 1000).toFixed(1)} s, NBD I/O failed by the kernel in ${g.nbdFailed} of ${g.rounds} round(s), ${g.hung} hung-task report(s), ${g.oom} OOM kill(s)`);
  const flag = find('flag', true);
  const none = find('no flag', true);
  const lines = [
    `What it shows. Under the hog, with the flag: ${say(flag)}; without it: ${say(none)}.`,
    `Without the hog, with the flag: ${say(find('flag', false))}; without it: ${say(find('no flag', false))}.`,
  ];
  if (flag === undefined || none === undefined) return lines.join(' ');
  if (flag.done > none.done) {
    lines.push(none.nbdFailed > 0
      ? 'Under memory pressure the unflagged engine is the one that stops serving writeback: a request it held past nbd-client\'s 60 s ' +
        'dead-connection timeout was failed by the kernel, and the ext4 on the volume aborted its journal.'
      : 'Under memory pressure the unflagged engine is the one that fails to get the write through (see the outcomes below).');
  } else if (none.done > flag.done) {
    lines.push('Here the flagged engine did worse: the flag does not cure this load in this guest (see the outcomes below).');
  } else if (flag.done === flag.rounds && none.done === none.rounds) {
    lines.push('Both finished every write: at this pressure, in this guest, the flag makes no difference to whether the write gets through; the speeds and latencies above are what is left to compare.');
  } else {
    lines.push('Both modes failed as often: this pressure defeats the engine with or without the flag.');
  }
  const ref = find('no flag', false);
  const limit = (hog: boolean) => Math.round(median(groups.filter((g) => g.hog === hog).map((g) => g.dirtyLimit)));
  if (ref !== undefined && find('flag', false) !== undefined) {
    lines.push(ref.done < ref.rounds
      ? `Without the hog the unflagged engine failed as well (${ref.rounds - ref.done} of ${ref.rounds}): the stall needs no hog, only a machine whose dirty-page limit ` +
        `(${limit(false)} MiB here; ${limit(true)} MiB with the hog) the volume's own dirty pages fill; the hog makes it certain.`
      : `Without the hog the unflagged engine got through: here it is the memory pressure, shrinking the dirty-page limit from ${limit(false)} to ${limit(true)} MiB, that turns its throttling into a stall.`);
  }
  const share = (g: ModeSummary) => (g.busy === 0 ? 'no' : `${g.throttled} of ${g.busy}`);
  lines.push('Busy engine-thread samples in balance_dirty_pages (the kernel throttling a writer for the whole machine\'s dirty pages; ' +
    `PF_LOCAL_THROTTLE, half of the flag, throttles the engine only for those of the disk it writes to): ` +
    `${share(flag)} with the flag, ${share(none)} without. The worst status probe, which the engine's event loop answers, took ${(flag.controlMax / 1000).toFixed(1)} s with the flag and ${(none.controlMax / 1000).toFixed(1)} s without.`);
  return lines.join(' ');
}

await main();
