// A small cluster of network namespaces for tests of members on other nodes: each node is a
// namespace with its own address (10.213.0.N/24), loopback and processes, linked by a veth pair
// to a bridge in a hub namespace of its own. Nothing is added to the host's namespace, so the
// test traffic cannot leave the namespaces made here. A partition is a link set down.
//
//   ns llr-<pid>-<seq>-n-a          ns llr-<pid>-<seq>-hub          ns llr-<pid>-<seq>-n-b
//   eth0 10.213.0.1/24 ──veth── p-a ┐                        ┌ p-b ──veth── eth0 10.213.0.2/24
//                                   └──────── br0 ───────────┘
//
// Needs root and iproute2 (`ip`, `tc`); without them create() throws: these tests never skip.

import { execFile, execFileSync, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

/** The subnet of every cluster. Clusters never see each other (each has its own hub), so runs in
 * parallel reuse it; the host has no address in it and no route to it. */
export const SUBNET_PREFIX = '10.213.0.';
export const SUBNET_BITS = 24;
/** Namespaces made here are named `llr-<pid of the test process>-<seq>-...`. */
const NAME_PATTERN = /^llr-(\d+)-(\d+)-(hub|n-[a-z0-9]+)$/;
const NODE_NAME = /^[a-z0-9]{1,10}$/;
/** A node's interface inside its namespace, and the hub's port for it (`p-<node>`, ≤ 15 chars). */
const NODE_IF = 'eth0';
const BRIDGE = 'br0';
const MAX_NODES = 200;

/** Tools run with the system directories first (as test/nbd/helpers.ts's TOOL_ENV). */
const TOOL_PATH = `/usr/sbin:/usr/bin:/sbin:/bin:${process.env.PATH ?? ''}`;
const TOOL_ENV = { ...process.env, PATH: TOOL_PATH };

/** How long destroy() lets a process take to end after SIGTERM before SIGKILL. */
const STOP_GRACE_MS = 3000;
/** How much of a process's stdout and stderr is kept (the tail). */
const OUTPUT_KEEP = 1 << 20;

const TOOL_DIRS = ['/usr/sbin', '/usr/bin', '/sbin', '/bin', '/usr/local/sbin', '/usr/local/bin'];

function findTool(name: string, dirs = TOOL_DIRS): string | undefined {
  return dirs.map((d) => join(d, name)).find((p) => existsSync(p));
}

/**
 * `ip`'s path, or a clear error: the cluster needs root and iproute2. (`uid` and `dirs` are
 * this process's and the system's; the test of this check passes others.)
 */
export function requireIp(uid = process.getuid?.(), dirs = TOOL_DIRS): string {
  if (uid !== 0) {
    throw new Error(`netns: network namespaces need root; this test process runs as uid ${uid ?? '?'} (run the tests as root, as CI does)`);
  }
  const ip = findTool('ip', dirs);
  if (!ip) throw new Error(`netns: \`ip\` not found in ${dirs.join(', ')}: install iproute2 (apt-get install -y iproute2)`);
  return ip;
}

export interface ExecResult {
  stdout: string;
  stderr: string;
}

/** Runs `cmd args` to the end (bounded by `timeoutMs`); rejects with its output on failure. */
function run(cmd: string, args: string[], options: { input?: string; timeoutMs?: number } = {}): Promise<ExecResult> {
  const timeoutMs = options.timeoutMs ?? 30_000;
  return new Promise((resolve, reject) => {
    const child = execFile(cmd, args, { env: TOOL_ENV, maxBuffer: 64 * 1024 * 1024, timeout: timeoutMs, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      if (err) {
        const why = err.killed ? `killed after ${timeoutMs} ms` : `exit ${String(err.code ?? err.signal)}`;
        reject(new Error(`${cmd} ${args.join(' ')}: ${why}\nstdout: ${stdout}\nstderr: ${stderr}`, { cause: err }));
      } else {
        resolve({ stdout, stderr });
      }
    });
    child.stdin?.end(options.input);
  });
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The pids of the processes inside namespace `ns` (none when it is gone). */
function nsPidsSync(ip: string, ns: string): number[] {
  try {
    const out = execFileSync(ip, ['netns', 'pids', ns], { env: TOOL_ENV, encoding: 'utf8', timeout: 10_000, stdio: ['ignore', 'pipe', 'ignore'] });
    return out.split('\n').filter((l) => l.trim() !== '').map(Number);
  } catch {
    return [];
  }
}

function listNamespacesSync(ip: string): string[] {
  const out = execFileSync(ip, ['netns', 'list'], { env: TOOL_ENV, encoding: 'utf8', timeout: 10_000 });
  // Lines are `NAME` or `NAME (id: N)`.
  return out.split('\n').map((l) => l.split(' ')[0] ?? '').filter((n) => n !== '');
}

/** Kills every process inside `names` (they were all started there by a cluster of ours) and
 * deletes the namespaces; their veths and bridge go with them. Synchronous, for process exit. */
function removeNamespacesSync(ip: string, names: string[]): void {
  for (let round = 0; round < 5; round++) {
    const pids = names.flatMap((ns) => nsPidsSync(ip, ns));
    if (pids.length === 0) break;
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    execFileSync('sleep', ['0.05']);
  }
  for (const ns of names) {
    try {
      execFileSync(ip, ['netns', 'del', ns], { env: TOOL_ENV, timeout: 10_000, stdio: 'ignore' });
    } catch {
      // already gone
    }
  }
}

/**
 * Deletes the namespaces of clusters whose test process is gone (a crashed or killed earlier
 * run): `llr-<pid>-...` where no process `pid` exists any more. Returns the names removed.
 */
export function cleanupLeftovers(): string[] {
  const ip = requireIp();
  const stale = listNamespacesSync(ip).filter((ns) => {
    const m = NAME_PATTERN.exec(ns);
    return m !== null && Number(m[1]) !== process.pid && !pidAlive(Number(m[1]));
  });
  if (stale.length > 0) removeNamespacesSync(ip, stale);
  return stale;
}

/** The clusters of this process not yet destroyed, removed at exit if a test forgot them. */
const live = new Set<Netns>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const net of live) net.destroySync();
  });
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      for (const net of live) net.destroySync();
      // As if no handler had been installed: die of the same signal.
      process.kill(process.pid, signal);
    });
  }
}

/** A process started in a node's namespace, with the tail of its output. */
export interface NsProcess {
  readonly node: string;
  readonly child: ChildProcess;
  readonly pid: number;
  stdout(): string;
  stderr(): string;
  /** Settles when the process has exited. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** True once the process has exited. */
  hasExited(): boolean;
  /** SIGTERM (or `signal`), SIGKILL after `graceMs`; resolves when it has exited. */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export interface NetnsOptions {
  /** Registers destroy() to run when the owner (a TestContext or a suite hook context) ends. */
  owner?: { after(fn: () => Promise<void> | void): void };
  /**
   * The /24 the nodes' addresses come from, as its first three octets and a dot (default
   * SUBNET_PREFIX): each issue's tests keep to their own subnet (issue 19's: 10.214.0.).
   */
  subnetPrefix?: string;
}

let sequence = 0;

export class Netns {
  readonly nodes: readonly string[];
  readonly hub: string;
  private readonly ip: string;
  private readonly nsOf = new Map<string, string>();
  private readonly addrOf = new Map<string, string>();
  private readonly processes = new Set<NsProcess>();
  private readonly partitioned = new Set<string>();
  private destroyed = false;

  private constructor(ip: string, nodes: readonly string[], prefix: string, subnetPrefix: string) {
    this.ip = ip;
    this.nodes = nodes;
    this.hub = `${prefix}-hub`;
    nodes.forEach((n, i) => {
      this.nsOf.set(n, `${prefix}-n-${n}`);
      this.addrOf.set(n, `${subnetPrefix}${i + 1}`);
    });
  }

  /**
   * Makes one namespace per node, linked through a bridge, each node with its address up and
   * its loopback up. Cleans up leftovers of dead earlier runs first. Throws when not root or
   * without `ip`.
   */
  static async create(nodes: readonly string[], options: NetnsOptions = {}): Promise<Netns> {
    const ip = requireIp();
    if (nodes.length === 0 || nodes.length > MAX_NODES) throw new Error(`netns: expected 1 to ${MAX_NODES} nodes, got ${nodes.length}`);
    for (const n of nodes) {
      if (!NODE_NAME.test(n)) throw new Error(`netns: node name ${JSON.stringify(n)} must be 1 to 10 of [a-z0-9]`);
    }
    if (new Set(nodes).size !== nodes.length) throw new Error(`netns: node names repeat: ${nodes.join(', ')}`);
    const subnetPrefix = options.subnetPrefix ?? SUBNET_PREFIX;
    if (!/^10\.\d{1,3}\.\d{1,3}\.$/.test(subnetPrefix)) throw new Error(`netns: subnetPrefix expects "10.X.Y." (a private /24), found ${JSON.stringify(subnetPrefix)}`);
    cleanupLeftovers();
    const net = new Netns(ip, nodes, `llr-${process.pid}-${++sequence}`, subnetPrefix);
    live.add(net);
    installExitHook();
    options.owner?.after(() => net.destroy());
    try {
      await net.build();
    } catch (err) {
      await net.destroy();
      throw err;
    }
    return net;
  }

  private async build(): Promise<void> {
    await this.ipCmd(['netns', 'add', this.hub]);
    await this.ipCmd(['-n', this.hub, 'link', 'set', 'lo', 'up']);
    // No STP and no forward delay: a port is forwarding as soon as it is up (heal is immediate).
    await this.ipCmd(['-n', this.hub, 'link', 'add', BRIDGE, 'type', 'bridge', 'stp_state', '0', 'forward_delay', '0']);
    await this.ipCmd(['-n', this.hub, 'link', 'set', BRIDGE, 'up']);
    for (const node of this.nodes) {
      const ns = this.ns(node);
      await this.ipCmd(['netns', 'add', ns]);
      await this.ipCmd(['-n', ns, 'link', 'set', 'lo', 'up']);
      await this.ipCmd(['-n', this.hub, 'link', 'add', this.port(node), 'type', 'veth', 'peer', 'name', NODE_IF, 'netns', ns]);
      await this.ipCmd(['-n', this.hub, 'link', 'set', this.port(node), 'master', BRIDGE]);
      await this.ipCmd(['-n', ns, 'addr', 'add', `${this.addr(node)}/${SUBNET_BITS}`, 'dev', NODE_IF]);
      await this.linkUp(node, true);
    }
  }

  /** The node's address (IPv4, in the cluster's /24: 10.213.0.0/24 unless created with another). */
  addr(node: string): string {
    const a = this.addrOf.get(node);
    if (a === undefined) throw new Error(`netns: no node ${JSON.stringify(node)} (nodes: ${this.nodes.join(', ')})`);
    return a;
  }

  /** Every node's address, by node name. */
  addrs(): Record<string, string> {
    return Object.fromEntries(this.nodes.map((n) => [n, this.addr(n)]));
  }

  /** The namespace name of `node`, for `ip netns exec` by hand. */
  ns(node: string): string {
    const ns = this.nsOf.get(node);
    if (ns === undefined) throw new Error(`netns: no node ${JSON.stringify(node)} (nodes: ${this.nodes.join(', ')})`);
    return ns;
  }

  /** Every namespace of the cluster, the hub's included. */
  namespaces(): string[] {
    return [this.hub, ...this.nodes.map((n) => this.ns(n))];
  }

  private port(node: string): string {
    return `p-${node}`;
  }

  /**
   * Starts `cmd args` inside `node`'s namespace (`ip netns exec`, which execs the command: the
   * child's pid is the command's). stdout and stderr are piped and kept unless `opts.stdio` says
   * otherwise. destroy() stops it.
   */
  spawn(node: string, cmd: string, args: readonly string[], opts: SpawnOptions = {}): NsProcess {
    this.assertLive();
    const ns = this.ns(node);
    const child = spawn(this.ip, ['netns', 'exec', ns, cmd, ...args], { env: TOOL_ENV, stdio: ['ignore', 'pipe', 'pipe'], ...opts });
    if (child.pid === undefined) throw new Error(`netns: could not start ${cmd} in ${ns}`);
    let out = '';
    let err = '';
    const keep = (s: string, d: Buffer): string => {
      const t = s + d.toString();
      return t.length > OUTPUT_KEEP ? t.slice(-OUTPUT_KEEP) : t;
    };
    child.stdout?.on('data', (d: Buffer) => (out = keep(out, d)));
    child.stderr?.on('data', (d: Buffer) => (err = keep(err, d)));
    let done = false;
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
      child.once('exit', (code, signal) => {
        done = true;
        resolve({ code, signal });
      });
      child.once('error', () => {
        done = true;
        resolve({ code: null, signal: null });
      });
    });
    const proc: NsProcess = {
      node,
      child,
      pid: child.pid,
      stdout: () => out,
      stderr: () => err,
      exited,
      hasExited: () => done,
      stop: async (signal = 'SIGTERM', graceMs = STOP_GRACE_MS) => {
        if (!done) {
          child.kill(signal);
          const timer = setTimeout(() => {
            if (!done) child.kill('SIGKILL');
          }, graceMs);
          await exited;
          clearTimeout(timer);
        }
        return exited;
      },
    };
    this.processes.add(proc);
    void exited.then(() => this.processes.delete(proc));
    return proc;
  }

  /** Runs a short command in `node`'s namespace to the end (at most `timeoutMs`, 30 s by
   * default); rejects with its output when it fails. */
  exec(node: string, cmd: string, args: readonly string[], options: { input?: string; timeoutMs?: number } = {}): Promise<ExecResult> {
    this.assertLive();
    return run(this.ip, ['netns', 'exec', this.ns(node), cmd, ...args], options);
  }

  /**
   * One TCP connect from inside `from` to `host:port`, at most `timeoutMs`: 'connected',
   * 'refused', 'timeout' or another error code ('unreachable' for EHOSTUNREACH/ENETUNREACH).
   */
  async probeTcp(from: string, host: string, port: number, timeoutMs = 2000): Promise<string> {
    const { stdout } = await this.exec(from, process.execPath, ['-e', PROBE_SCRIPT, host, String(port), String(timeoutMs), '1'], { timeoutMs: timeoutMs + 10_000 });
    return stdout.trim();
  }

  /** Connects from inside `from` to `host:port` until one connect succeeds, for at most
   * `timeoutMs`; throws with the last outcome when none does. */
  async waitForPort(from: string, host: string, port: number, timeoutMs = 10_000): Promise<void> {
    const attempts = Math.max(1, Math.ceil(timeoutMs / 100));
    const { stdout } = await this.exec(from, process.execPath, ['-e', PROBE_SCRIPT, host, String(port), String(timeoutMs), String(attempts)], { timeoutMs: timeoutMs + 10_000 });
    if (stdout.trim() !== 'connected') throw new Error(`netns: ${host}:${port} does not accept connections from ${from} within ${timeoutMs} ms (last: ${stdout.trim()})`);
  }

  /** Cuts `node` off the others: its veth is set down at both ends (its own and the hub's).
   * Connections in flight see silence, as when a cable is pulled; new ones time out. */
  async partition(node: string): Promise<void> {
    await this.linkUp(node, false);
    this.partitioned.add(node);
  }

  /** Undoes partition(node): both ends of its veth up again. */
  async heal(node: string): Promise<void> {
    await this.linkUp(node, true);
    this.partitioned.delete(node);
  }

  isPartitioned(node: string): boolean {
    return this.partitioned.has(node);
  }

  private async linkUp(node: string, up: boolean): Promise<void> {
    this.assertLive();
    const state = up ? 'up' : 'down';
    await this.ipCmd(['-n', this.hub, 'link', 'set', this.port(node), state]);
    await this.ipCmd(['-n', this.ns(node), 'link', 'set', NODE_IF, state]);
  }

  /**
   * Delays every packet leaving `node` (tc netem on its interface); 0 removes the delay. Throws
   * when the kernel has no netem (sch_netem), as some test hosts do not.
   */
  async delay(node: string, ms: number): Promise<void> {
    this.assertLive();
    const tc = findTool('tc');
    if (!tc) throw new Error('netns: `tc` not found: install iproute2');
    const ns = this.ns(node);
    if (ms <= 0) {
      await run(tc, ['-n', ns, 'qdisc', 'del', 'dev', NODE_IF, 'root']).catch(() => undefined);
      return;
    }
    try {
      await run(tc, ['-n', ns, 'qdisc', 'replace', 'dev', NODE_IF, 'root', 'netem', 'delay', `${ms}ms`]);
    } catch (err) {
      throw new Error(`netns: cannot delay ${node}: tc netem failed (does this kernel have sch_netem?): ${(err as Error).message}`, { cause: err });
    }
  }

  /** Stops every process started in the cluster (SIGTERM, SIGKILL after a bounded wait), kills
   * whatever else is still inside its namespaces and deletes them. Safe to call twice. */
  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    await Promise.all([...this.processes].map((p) => p.stop('SIGTERM', STOP_GRACE_MS)));
    removeNamespacesSync(this.ip, this.namespaces());
    live.delete(this);
  }

  /** destroy() for process exit, where nothing asynchronous runs: SIGKILL to everything. */
  destroySync(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const p of this.processes) {
      if (!p.hasExited()) p.child.kill('SIGKILL');
    }
    removeNamespacesSync(this.ip, this.namespaces());
    live.delete(this);
  }

  private assertLive(): void {
    if (this.destroyed) throw new Error(`netns: cluster ${this.hub.replace(/-hub$/, '')} was destroyed`);
  }

  private async ipCmd(args: string[]): Promise<void> {
    await run(this.ip, args);
  }
}

/**
 * `node -e PROBE_SCRIPT host port timeoutMs attempts`: connects until one connect succeeds or
 * `attempts` have failed or `timeoutMs` has passed overall; prints the last outcome. Runs in a
 * node's namespace (the test process itself is in the host's and cannot reach the addresses).
 */
const PROBE_SCRIPT = `
const net = require('node:net');
const [host, port, total, attempts] = process.argv.slice(1);
const deadline = Date.now() + Number(total);
const names = { ECONNREFUSED: 'refused', EHOSTUNREACH: 'unreachable', ENETUNREACH: 'unreachable', ETIMEDOUT: 'timeout' };
function once(ms) {
  return new Promise((resolve) => {
    const s = net.connect({ host, port: Number(port) });
    const timer = setTimeout(() => { s.destroy(); resolve('timeout'); }, Math.max(1, ms));
    s.once('connect', () => { clearTimeout(timer); s.destroy(); resolve('connected'); });
    s.once('error', (e) => { clearTimeout(timer); resolve(names[e.code] || e.code || String(e)); });
  });
}
(async () => {
  let last = 'timeout';
  for (let i = 0; i < Number(attempts); i++) {
    const left = deadline - Date.now();
    if (left <= 0) break;
    last = await once(left);
    if (last === 'connected') break;
    await new Promise((r) => setTimeout(r, Math.min(100, Math.max(0, deadline - Date.now()))));
  }
  process.stdout.write(last + '\\n');
})();
`;
