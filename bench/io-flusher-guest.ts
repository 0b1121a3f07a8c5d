// The guest side of bench/io-flusher.ts: runs as root inside /work/shared/tools/kernel-vm (a small
// Linux guest with the nbd driver). Per round and mode, a raid1 of two member files on an ext4 of
// the guest's virtio disk is served by `llraid serve`, attached through the kernel NBD client,
// formatted and mounted; a memory hog then takes all but a little of the guest's RAM while dd
// fills the mounted filesystem (conv=fsync), and two probes time the engine every ~100 ms: a
// control-socket `status` and an O_DIRECT 4 KiB read of /dev/nbd0. Writes the rounds as JSON to
// argv[2]; bench/io-flusher.ts prints them.
//
// The engine and its nbd-client are started by the same parent in both modes (this script run as
// `parent`, the way the engine host starts them); the modes differ only in whether that parent
// called enableIoFlusher() first, so that the engine and nbd-client inherit PR_SET_IO_FLUSHER.

import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { connect } from 'node:net';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { performance } from 'node:perf_hooks';
import { promisify } from 'node:util';
import { enableIoFlusher, ioFlusherThreads } from '../src/engine/io-flusher.js';
import { rssKiB } from './proc.js';

const run = promisify(execFile);
const ROOT = new URL('..', import.meta.url).pathname;
const CLI = `${ROOT}dist/src/cli/bin.cjs`;
const SELF = new URL(import.meta.url).pathname;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export type Mode = 'flag' | 'no flag';

/** One round of one mode, as the guest measured it (the JSON bench/io-flusher.ts reads). */
export interface RoundResult {
  mode: Mode;
  round: number;
  /** Threads carrying PR_SET_IO_FLUSHER, "flagged/threads", of the engine and of nbd-client. */
  engineFlag: string;
  clientFlag: string;
  /** 0 in a reference round (no hog). */
  hogMiB: number;
  /** MemAvailable once the hog held its memory, just before the writer started. */
  availableMiB: number;
  /** The kernel's global dirty page limit then (vmstat nr_dirty_threshold). */
  dirtyThresholdMiB: number;
  completed: boolean;
  /** dd's exit, or why it did not end by itself (timeout, I/O error). */
  outcome: string;
  seconds: number;
  mbPerSec: number;
  /** Control-socket `status` latency, ms (a probe still waiting at the end counts with its age). */
  control: ProbeStats;
  /** O_DIRECT 4 KiB read of /dev/nbd0, ms, dd's fork and exec included. */
  nbdRead: ProbeStats;
  /** Idle latencies before the hog and the writer start, for scale. */
  idleControlP50: number;
  idleNbdReadP50: number;
  hungTasks: string[];
  oomKills: string[];
  /** Requests the kernel gave up on after nbd-client's 60 s dead-connection timeout (dmesg). */
  nbdTimeouts: number;
  nbdIoErrors: number;
  /** Seconds after the writer started when the kernel first timed out or failed a request on nbd0. */
  firstNbdErrorSec: number | null;
  /** The first distinct kernel messages about nbd, hung tasks, OOM and filesystem errors. */
  kernelLog: string[];
  engineRssMaxMiB: number;
  /** Peak Dirty + Writeback of the whole guest. */
  dirtyMaxMiB: number;
  /** Where the engine's threads were found blocked (kernel wait channel: one-second samples). */
  engineWaits: Record<string, number>;
  /** Seconds of /proc/pressure/memory "full" (every task stalled on memory) during the write. */
  psiFullSec: number;
  psiSomeSec: number;
}

export interface ProbeStats {
  count: number;
  failures: number;
  p50: number;
  p99: number;
  max: number;
}

export interface GuestConfig {
  volumeMiB: number;
  writeMiB: number;
  /** Rounds of each mode under the hog's pressure. */
  rounds: number;
  /** Rounds of each mode before those, without the hog: the same write without memory pressure. */
  referenceRounds: number;
  headroomMiB: number;
  timeoutSec: number;
  hungTaskSec: number;
}

const DISK = '/tmp/disk';
const VOL = '/tmp/vol';
const DEV = '/dev/nbd0';
const SOCKET = '/tmp/engine.sock';
const CONTROL = '/tmp/engine.ctl';
const MEMBERS = [`${DISK}/m0`, `${DISK}/m1`];

/**
 * The engine's parent (`parent --flag|--no-flag MEMBERS...`): optionally sets the flag, starts the
 * engine and attaches it as the CSI kernel attacher does, prints `{"engine":PID}` and stays until
 * SIGTERM, when it stops the engine.
 */
async function parent(flag: boolean, members: string[]): Promise<void> {
  if (flag) {
    const r = await enableIoFlusher();
    if (!r.ok) throw new Error(`parent: ${r.reason}`);
  }
  const engine = spawn(process.execPath, [CLI, 'serve', '--socket', SOCKET, '--control', CONTROL, '--export-name', 'bench', '--quiet', ...members], { stdio: ['ignore', 2, 'inherit'] });
  for (let i = 0; i < 1200 && !existsSync(CONTROL); i++) {
    if (engine.exitCode !== null) throw new Error(`parent: the engine exited with ${engine.exitCode} before listening`);
    await sleep(50);
  }
  // The flags src/csi/attach-kernel.ts uses: ioctl mode, the client stays (and reconnects), and a
  // request waits at most 60 s on a dead connection.
  await run('nbd-client', ['-unix', SOCKET, DEV, '-N', 'bench', '-b', '4096', '-t', '60', '-nonetlink', '-persist']);
  process.stdout.write(`${JSON.stringify({ engine: engine.pid })}\n`);
  await new Promise((r) => process.once('SIGTERM', r));
  engine.kill('SIGTERM');
  await new Promise((r) => (engine.exitCode !== null ? r(undefined) : engine.once('exit', r)));
}

async function main(resultFile: string | undefined, cfg: GuestConfig): Promise<void> {
  const rounds: RoundResult[] = [];
  const result: Record<string, unknown> = { config: cfg, rounds };
  const save = () => resultFile !== undefined && writeFileSync(resultFile, JSON.stringify(result));
  try {
    // A task in D state this long is reported in dmesg ("blocked for more than N seconds").
    writeFileSync('/proc/sys/kernel/hung_task_timeout_secs', String(cfg.hungTaskSec));
    // Every one of them, not only the first ten of the boot (the default).
    writeFileSync('/proc/sys/kernel/hung_task_warnings', '-1');
    result.kernel = (await run('uname', ['-r'])).stdout.trim();
    result.memTotalMiB = meminfo('MemTotal');
    result.psi = existsSync('/proc/pressure/memory');
    mkdirSync(DISK, { recursive: true });
    mkdirSync(VOL, { recursive: true });
    await run('mkfs.ext4', ['-q', '-F', '/dev/vda']);
    await run('mount', ['/dev/vda', DISK]);
    // The reference rounds (no hog) first, then the rounds under pressure.
    const plan = [
      ...Array.from({ length: cfg.referenceRounds }, (_, i) => ({ round: i + 1, of: cfg.referenceRounds, hog: false })),
      ...Array.from({ length: cfg.rounds }, (_, i) => ({ round: i + 1, of: cfg.rounds, hog: true })),
    ];
    for (const { round, of, hog } of plan) {
      // Alternating which mode goes first, so that neither always runs on a fresher disk.
      const order: Mode[] = round % 2 === 1 ? ['flag', 'no flag'] : ['no flag', 'flag'];
      for (const mode of order) {
        log(`round ${round}/${of}${hog ? '' : ' (reference, no hog)'}: ${mode}`);
        const r = await runRound(mode, round, hog, cfg);
        rounds.push(r.result);
        save();
        if (!r.clean) throw new Error(`round ${round} (${mode}): ${r.result.outcome}; the guest could not tear the volume down, so no further rounds run`);
      }
    }
    result.ok = true;
  } catch (err) {
    result.error = (err as Error).message;
  }
  save();
  process.stdout.write(`RESULT ${JSON.stringify(result)}\n`);
  // Whatever a failed round left running (a parent, a probe) must not keep the guest up.
  process.exit(0);
}

async function runRound(mode: Mode, round: number, withHog: boolean, cfg: GuestConfig): Promise<{ result: RoundResult; clean: boolean }> {
  for (const f of [...MEMBERS, SOCKET, CONTROL]) rmSync(f, { force: true });
  await run(process.execPath, [CLI, 'create', '--level', '1', '--name', 'bench', '--size', `${cfg.volumeMiB}M`, '--assume-clean', ...MEMBERS]);
  await run('sync');
  writeFileSync('/proc/sys/vm/drop_caches', '3');
  await run('dmesg', ['-C']);
  // Followed as it comes: a stalled volume's filesystem errors fill the ring buffer within
  // minutes, and the first messages are the ones that say what happened.
  const kernel = followKernelLog();

  const host = spawn(process.execPath, ['--import', 'tsx', SELF, 'parent', mode === 'flag' ? '--flag' : '--no-flag', ...MEMBERS], { stdio: ['ignore', 'pipe', 'inherit'], cwd: ROOT });
  const first = await firstLine(host);
  const enginePid = (JSON.parse(first) as { engine: number }).engine;
  const clientPid = Number(readFileSync('/sys/block/nbd0/pid', 'utf8').trim());
  const flags = (pid: number) => {
    const t = ioFlusherThreads(pid);
    return `${t.flagged}/${t.threads}`;
  };
  const engineFlag = flags(enginePid);
  const clientFlag = flags(clientPid);
  await run('mkfs.ext4', ['-q', '-F', '-E', 'nodiscard', DEV]);
  await run('mount', [DEV, VOL]);

  // Idle latencies, for scale.
  let control = probeControl();
  let nbd = probeNbdRead();
  await sleep(3000);
  const idleControl = await control.stop();
  const idleNbd = await nbd.stop();

  // The hog: all of MemAvailable but the headroom, written (so really resident) and held. The
  // guest has no swap, so only page cache (clean, or dirty after writeback) can give way.
  await run('sync');
  writeFileSync('/proc/sys/vm/drop_caches', '3');
  const hogMiB = withHog ? Math.max(0, meminfo('MemAvailable') - cfg.headroomMiB) : 0;
  const hog = spawn('/usr/bin/python3', ['-c', HOG, String(hogMiB)], { stdio: ['ignore', 'pipe', 'inherit'] });
  await firstLine(hog);
  const availableMiB = meminfo('MemAvailable');
  const dirtyThresholdMiB = Math.round(vmstat('nr_dirty_threshold') / 256);

  const sampler = sampleEngine(enginePid);
  control = probeControl();
  nbd = probeNbdRead();
  const psi0 = psi();
  kernel.writeStartedAt(uptime());
  const t0 = performance.now();
  const writer = spawn('dd', ['if=/dev/zero', `of=${VOL}/fill`, 'bs=1M', `count=${cfg.writeMiB}`, 'conv=fsync', 'status=none'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let ddErr = '';
  writer.stderr!.on('data', (d: Buffer) => (ddErr += d.toString()));
  const exited = new Promise<number | null>((r) => writer.once('exit', (code) => r(code)));
  // Once the kernel has failed a request the filesystem is lost (ext4 aborts its journal), so
  // the round ends then, a little later, rather than at the time limit.
  const within = await Promise.race([
    exited,
    sleep(cfg.timeoutSec * 1000).then(() => 'timeout' as const),
    kernel.nbdFailed.then(() => sleep(15_000)).then(() => 'nbd failed' as const),
  ]);
  const seconds = (performance.now() - t0) / 1000;
  let outcome: string;
  if (within === 'timeout' || within === 'nbd failed') {
    // Relieve the pressure and see whether the writer then gets through.
    const why = within === 'timeout' ? `no end within ${cfg.timeoutSec} s` : `the kernel failed nbd0 requests (${kernel.firstNbdErrorSec()?.toFixed(0)} s into the write)`;
    hog.kill('SIGKILL');
    const after = withHog ? 'after the hog was killed' : 'later';
    const later = await Promise.race([exited, sleep(60_000).then(() => 'still' as const)]);
    outcome = later === 'still'
      ? `${why}; dd still running 60 s ${after}`
      : `${why}; dd ended (exit ${later}) ${((performance.now() - t0) / 1000 - seconds).toFixed(0)} s ${after}`;
  } else {
    outcome = within === 0 ? 'ok' : `dd exit ${within}: ${ddErr.trim().split('\n').pop() ?? ''}`;
  }
  const psi1 = psi();
  const controlStats = await control.stop();
  const nbdStats = await nbd.stop();
  const samples = sampler.stop();
  hog.kill('SIGKILL');
  const k = kernel.stop();

  const result: RoundResult = {
    mode, round, engineFlag, clientFlag, hogMiB, availableMiB, dirtyThresholdMiB,
    completed: within === 0,
    outcome,
    seconds,
    mbPerSec: within === 0 ? (cfg.writeMiB * 1.048576) / seconds : 0,
    control: controlStats,
    nbdRead: nbdStats,
    idleControlP50: idleControl.p50,
    idleNbdReadP50: idleNbd.p50,
    ...k,
    engineRssMaxMiB: samples.rssMaxKiB / 1024,
    dirtyMaxMiB: samples.dirtyMaxKiB / 1024,
    engineWaits: samples.waits,
    psiFullSec: (psi1.full - psi0.full) / 1e6,
    psiSomeSec: (psi1.some - psi0.some) / 1e6,
  };
  log(JSON.stringify(result));
  return { result, clean: await teardown(host, writer) };
}

interface KernelLog {
  hungTasks: string[];
  oomKills: string[];
  nbdTimeouts: number;
  nbdIoErrors: number;
  firstNbdErrorSec: number | null;
  kernelLog: string[];
}

/** `dmesg -w` from now on: counts what matters and keeps the first distinct lines about it. */
function followKernelLog(): { nbdFailed: Promise<void>; writeStartedAt(uptime: number): void; firstNbdErrorSec(): number | null; stop(): KernelLog } {
  const child = spawn('dmesg', ['-w'], { stdio: ['ignore', 'pipe', 'ignore'] });
  const out: KernelLog = { hungTasks: [], oomKills: [], nbdTimeouts: 0, nbdIoErrors: 0, firstNbdErrorSec: null, kernelLog: [] };
  const seen = new Set<string>();
  let start = 0;
  let failed: () => void = () => undefined;
  const nbdFailed = new Promise<void>((r) => (failed = r));
  createInterface({ input: child.stdout! }).on('line', (line) => {
    const at = Number(/^\[\s*(\d+\.\d+)\]/.exec(line)?.[1] ?? NaN);
    const hung = /task (\S+):\d+ blocked for more than/.exec(line);
    if (hung) out.hungTasks.push(hung[1]!);
    const oom = /Killed process \d+ \((\S+)\)/.exec(line);
    if (oom) out.oomKills.push(oom[1]!);
    const timeout = /nbd0: Connection timed out/.test(line);
    const ioError = /I\/O error, dev nbd0/.test(line);
    if (timeout) out.nbdTimeouts++;
    if (ioError) out.nbdIoErrors++;
    if ((timeout || ioError) && out.firstNbdErrorSec === null && start > 0) {
      out.firstNbdErrorSec = at - start;
      failed();
    }
    if (!/nbd|blocked for more than|Killed process|invoked oom-killer|EXT4-fs error|Journal has aborted/.test(line)) return;
    if (/detected capacity change|mounted filesystem/.test(line)) return;
    const text = line.replace(/^\[\s*\d+\.\d+\]\s*/, '').replace(/\d+/g, 'N');
    if (seen.has(text) || out.kernelLog.length >= 20) return;
    seen.add(text);
    out.kernelLog.push(line);
  });
  return {
    nbdFailed,
    writeStartedAt: (uptime: number) => void (start = uptime),
    firstNbdErrorSec: () => out.firstNbdErrorSec,
    stop() {
      child.kill('SIGKILL');
      return out;
    },
  };
}

/** Wait channels of no interest: a thread idle in its event loop or pool. */
const IDLE = new Set(['0', 'ep_poll', 'do_epoll_wait', 'futex_wait_queue', 'futex_wait_queue_me', 'do_nanosleep', 'hrtimer_nanosleep']);

/** Every second: the engine's RSS, dirty page cache, and where the engine's busy threads wait. */
function sampleEngine(pid: number): { stop(): { rssMaxKiB: number; dirtyMaxKiB: number; waits: Record<string, number> } } {
  let rssMaxKiB = 0;
  let dirtyMaxKiB = 0;
  const waits = new Map<string, number>();
  const timer = setInterval(() => {
    rssMaxKiB = Math.max(rssMaxKiB, rssKiB(pid));
    dirtyMaxKiB = Math.max(dirtyMaxKiB, meminfoKiB('Dirty') + meminfoKiB('Writeback'));
    let tids: string[] = [];
    try {
      tids = readdirSync(`/proc/${pid}/task`);
    } catch {
      // gone
    }
    for (const tid of tids) {
      try {
        const w = readFileSync(`/proc/${pid}/task/${tid}/wchan`, 'utf8').trim();
        if (!IDLE.has(w)) waits.set(w, (waits.get(w) ?? 0) + 1);
      } catch {
        // gone
      }
    }
  }, 1000);
  return {
    stop() {
      clearInterval(timer);
      const top = [...waits].sort((a, b) => b[1] - a[1]).slice(0, 4);
      return { rssMaxKiB, dirtyMaxKiB, waits: Object.fromEntries(top) };
    },
  };
}

/** Unmounts, detaches and stops the engine; false when the volume cannot be let go. */
async function teardown(host: ChildProcess, writer: ChildProcess): Promise<boolean> {
  const quiet = (cmd: string, args: string[]) => run(cmd, args).then(() => true, () => false);
  if (writer.exitCode === null && writer.signalCode === null) {
    // A writer stuck in the kernel: killing the engine fails its requests after nbd-client's
    // dead-connection timeout.
    writer.kill('SIGKILL');
    host.kill('SIGKILL');
    for (const pid of enginePids()) process.kill(pid, 'SIGKILL');
    await Promise.race([new Promise((r) => writer.once('exit', r)), sleep(90_000)]);
  }
  const unmounted = await quiet('umount', [VOL]) || await quiet('umount', ['-l', VOL]);
  await quiet('nbd-client', ['-d', DEV]);
  host.kill('SIGTERM');
  await Promise.race([new Promise((r) => (host.exitCode !== null || host.signalCode !== null ? r(undefined) : host.once('exit', r))), sleep(60_000)]);
  for (const pid of enginePids()) process.kill(pid, 'SIGKILL');
  await sleep(500);
  return unmounted && (writer.exitCode !== null || writer.signalCode !== null);
}

function enginePids(): number[] {
  const pids: number[] = [];
  for (const name of readdirNumeric()) {
    try {
      if (readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0').includes(CONTROL)) pids.push(Number(name));
    } catch {
      // gone
    }
  }
  return pids;
}

function readdirNumeric(): string[] {
  return readdirSync('/proc').filter((n) => /^\d+$/.test(n));
}

// The hog: 16 MiB blocks of 0x01 (bytes * n writes every byte), held until killed.
const HOG = `import sys, time
blocks = [b'\\x01' * (16 << 20) for _ in range(int(sys.argv[1]) // 16)]
print('ready', flush=True)
while True:
    time.sleep(3600)
`;

interface Probe {
  stop(): Promise<ProbeStats>;
}

/** `status` on the control socket, one at a time, every 100 ms. */
function probeControl(): Probe {
  const lat: number[] = [];
  let failures = 0;
  let running = true;
  let pendingSince: number | undefined;
  const loop = (async () => {
    while (running) {
      const t = performance.now();
      pendingSince = t;
      if (!(await statusOk())) failures++;
      pendingSince = undefined;
      const ms = performance.now() - t;
      lat.push(ms);
      await sleep(Math.max(0, 100 - ms));
    }
  })();
  return {
    async stop() {
      running = false;
      // A probe still waiting counts with its age; it is not awaited.
      const pending = pendingSince;
      if (pending !== undefined) lat.push(performance.now() - pending);
      await Promise.race([loop, sleep(5000)]);
      return stats(lat, failures);
    },
  };
}

/**
 * One `status` request on the engine's control socket (md/control/protocol.ts: a JSON line each
 * way), as any client of it sends one; whether the engine answered ok.
 */
function statusOk(): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(CONTROL);
    let buf = '';
    socket.setEncoding('utf8');
    socket.on('connect', () => socket.write('{"op":"status"}\n'));
    socket.on('data', (d: string) => {
      buf += d;
      if (!buf.includes('\n')) return;
      socket.end();
      try {
        resolve((JSON.parse(buf.slice(0, buf.indexOf('\n'))) as { ok?: boolean }).ok === true);
      } catch {
        resolve(false);
      }
    });
    socket.on('error', () => resolve(false));
    socket.on('close', () => resolve(false));
  });
}

/** dd iflag=direct of one random 4 KiB block of /dev/nbd0 every 100 ms, from a bash loop. */
function probeNbdRead(): Probe {
  const script = `blocks=$(( $(blockdev --getsize64 ${DEV}) / 4096 ))
while :; do
  echo "S $EPOCHREALTIME"
  dd if=${DEV} of=/dev/null bs=4096 count=1 skip=$(( (RANDOM * 32768 + RANDOM) % blocks )) iflag=direct status=none
  echo "E $EPOCHREALTIME $?"
  sleep 0.1
done`;
  const child = spawn('bash', ['-c', script], { stdio: ['ignore', 'pipe', 'ignore'] });
  const lat: number[] = [];
  let failures = 0;
  let started: number | undefined;
  createInterface({ input: child.stdout! }).on('line', (line) => {
    const [kind, at, rc] = line.split(' ');
    if (kind === 'S') started = Number(at);
    else if (started !== undefined) {
      lat.push((Number(at) - started) * 1000);
      if (rc !== '0') failures++;
      started = undefined;
    }
  });
  return {
    async stop() {
      if (started !== undefined) lat.push(Date.now() - started * 1000);
      child.kill('SIGKILL');
      return stats(lat, failures);
    },
  };
}

function stats(lat: number[], failures: number): ProbeStats {
  const s = [...lat].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? 0;
  return { count: s.length, failures, p50: at(0.5), p99: at(0.99), max: s[s.length - 1] ?? 0 };
}

function firstLine(child: ChildProcess): Promise<string> {
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    lines.once('line', (l) => resolve(l));
    child.once('exit', (code) => reject(new Error(`${child.spawnargs.slice(0, 3).join(' ')} exited with ${code} before it was ready`)));
  });
}

function uptime(): number {
  return Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]);
}

function vmstat(field: string): number {
  return Number(new RegExp(`^${field} (\\d+)`, 'm').exec(readFileSync('/proc/vmstat', 'utf8'))?.[1] ?? 0);
}

function meminfoKiB(field: string): number {
  return Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync('/proc/meminfo', 'utf8'))?.[1] ?? 0);
}

function meminfo(field: string): number {
  return Math.floor(meminfoKiB(field) / 1024);
}


/** Total stall microseconds of /proc/pressure/memory (0 without PSI). */
function psi(): { some: number; full: number } {
  try {
    const text = readFileSync('/proc/pressure/memory', 'utf8');
    const total = (kind: string) => Number(new RegExp(`^${kind} .*total=(\\d+)`, 'm').exec(text)?.[1] ?? 0);
    return { some: total('some'), full: total('full') };
  } catch {
    return { some: 0, full: 0 };
  }
}

function log(m: string): void {
  process.stderr.write(`io-flusher guest: ${m}\n`);
}

// Last, once every constant above is initialised.
if (process.argv[2] === 'parent') await parent(process.argv[3] === '--flag', process.argv.slice(4));
else await main(process.argv[2], JSON.parse(process.argv[3] ?? '{}') as GuestConfig);
