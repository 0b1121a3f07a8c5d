// The node's member service: one `llraid member-serve` process exporting the member files of the
// node's disks over NBD with TLS, to engines on other nodes (docs/architecture.md, "Who runs the
// member service"). The engine host runs it (so it outlives a restart of the node plugin, as
// engines do), or the plugin when engines run in the plugin. Either way through this module:
//
// - started detached, like engines, with its output in <runDir>/member-service.log and its events
//   in <runDir>/member-service.events.jsonl; that events path in its command line is what marks it
//   as this run dir's member service;
// - a runner that finds one already running (an engine host or plugin restarted in the same PID
//   namespace) adopts it instead of starting a second, which could not bind the port anyway; one
//   running with other arguments (a changed address, TLS directory or disks) is replaced;
// - restarted when it dies, after a delay that doubles from minDelayMs up to maxDelayMs and drops
//   back once a run lasted stableMs, so a service that cannot start does not spin;
// - a port held by something else (EADDRINUSE and no member service of ours to adopt) fails the
//   first start loudly, naming the address, and is retried (and logged) after that.

import { spawn } from 'node:child_process';
import { accessSync, closeSync, constants, openSync, promises as fs } from 'node:fs';
import path from 'node:path';
import { findProcesses, isAlive, waitExit, type ProcessInfo } from '../engine/processes.js';
import { engineEnvironment } from '../engine/supervisor.js';
import type { MemberServiceConfig } from './config.js';
import { CsiError } from './errors.js';

export interface MemberServiceRunnerOptions {
  /** argv prefix that runs the llraid CLI, e.g. [node, dist/src/cli/bin.cjs]. */
  command: string[];
  runDir: string;
  log: (message: string) => void;
  /** How often the process is looked at (default 1 s). */
  checkIntervalMs?: number;
  /** Restart delays (defaults 1 s, doubling to 30 s; back to 1 s after a run of 60 s). */
  minDelayMs?: number;
  maxDelayMs?: number;
  stableMs?: number;
  /** How long a start may take before the port accepts connections (default 30 s). */
  startTimeoutMs?: number;
}

export class MemberServiceRunner {
  private pid: number | undefined;
  private startedAt = 0;
  private delay: number;
  private timer: NodeJS.Timeout | undefined;
  private checking = false;
  private closed = false;

  constructor(
    private readonly config: MemberServiceConfig,
    private readonly options: MemberServiceRunnerOptions,
  ) {
    this.delay = options.minDelayMs ?? 1000;
  }

  get eventsFile(): string {
    return path.join(this.options.runDir, 'member-service.events.jsonl');
  }

  get logFile(): string {
    return path.join(this.options.runDir, 'member-service.log');
  }

  get address(): string {
    return this.config.host.includes(':') ? `[${this.config.host}]:${this.config.port}` : `${this.config.host}:${this.config.port}`;
  }

  /** The pid of the running service (adopted or started), if any. */
  get running(): number | undefined {
    return this.pid;
  }

  /** The `member-serve` arguments this node's settings ask for. */
  args(): string[] {
    const { tls, disks } = this.config;
    return ['member-serve', '--listen', this.address, '--tls-cert', tls.cert, '--tls-key', tls.key, '--tls-ca', tls.ca, '--events', this.eventsFile, ...disks];
  }

  /**
   * Adopts this run dir's running member service or starts one, resolves once it accepts
   * connections, and supervises it from then on. Rejects (CsiError FAILED_PRECONDITION) when the
   * TLS files cannot be read or the service cannot start, naming why.
   */
  async start(): Promise<void> {
    this.checkFiles();
    await fs.mkdir(this.options.runDir, { recursive: true, mode: 0o700 });
    await this.adoptOrStart();
    this.timer = setInterval(() => void this.check(), this.options.checkIntervalMs ?? 1000);
    this.timer.unref();
  }

  /**
   * Stops supervising. With `stopService` the service is stopped too (SIGTERM, SIGKILL after
   * 10 s); without, it keeps running for the next runner in this PID namespace to adopt.
   */
  async close(stopService: boolean): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    const pid = this.pid;
    if (!stopService || pid === undefined || !isAlive(pid)) return;
    process.kill(pid, 'SIGTERM');
    if (!(await waitExit(pid, 10_000))) {
      process.kill(pid, 'SIGKILL');
      await waitExit(pid, 5_000);
    }
    this.options.log(`member service (pid ${pid}) stopped`);
  }

  private checkFiles(): void {
    for (const [what, file] of [['ca.crt', this.config.tls.ca], ['tls.crt', this.config.tls.cert], ['tls.key', this.config.tls.key]] as const) {
      try {
        accessSync(file, constants.R_OK);
      } catch (err) {
        throw new CsiError('FAILED_PRECONDITION', `member service: cannot read ${what} of the TLS directory (LLRAID_TLS_DIR) at ${file}: ${(err as Error).message}`);
      }
    }
  }

  private async adoptOrStart(): Promise<void> {
    const found = await this.findRunning();
    const wanted = this.args().join('\0');
    if (found !== undefined) {
      if (found.argv.slice(found.argv.indexOf('member-serve')).join('\0') === wanted) {
        this.adopt(found.pid, 'adopted the running member service');
        return;
      }
      // Another address, TLS directory or disk list than this node's settings now ask for.
      this.options.log(`member service (pid ${found.pid}) runs with other arguments than the settings ask for; replacing it`);
      process.kill(found.pid, 'SIGTERM');
      if (!(await waitExit(found.pid, 10_000))) process.kill(found.pid, 'SIGKILL');
      await waitExit(found.pid, 5_000);
    }
    await this.spawnAndWait();
  }

  private adopt(pid: number, why: string): void {
    this.pid = pid;
    this.startedAt = Date.now();
    this.options.log(`${why} (pid ${pid}) on ${this.address}`);
  }

  /** This run dir's member service, found by the events file in its command line. */
  private async findRunning(): Promise<ProcessInfo | undefined> {
    const procs = await findProcesses(this.eventsFile);
    return procs.find((p) => p.argv.includes('member-serve') && p.argv[p.argv.indexOf('--events') + 1] === this.eventsFile);
  }

  private async spawnAndWait(): Promise<void> {
    // Readiness is the child's own `listening` event, appended past this offset: a connection to
    // the port could reach whatever else holds it.
    const offset = (await fs.stat(this.eventsFile).catch(() => undefined))?.size ?? 0;
    const log = openSync(this.logFile, 'a');
    const [cmd, ...prefix] = this.options.command;
    if (cmd === undefined) throw new CsiError('INTERNAL', 'member service: the llraid command is empty');
    // The member service is an engine's kind of process (the same CLI, the same flags: engineCommand).
    const child = spawn(cmd, [...prefix, ...this.args()], { detached: true, stdio: ['ignore', log, log], env: engineEnvironment() });
    closeSync(log);
    child.unref();
    const pid = child.pid;
    if (pid === undefined) throw new CsiError('FAILED_PRECONDITION', `member service: could not start ${cmd}`);
    let exited = false;
    child.once('exit', () => (exited = true));
    const deadline = Date.now() + (this.options.startTimeoutMs ?? 30_000);
    while (Date.now() < deadline && !exited) {
      if (await this.listeningSince(offset)) {
        this.adopt(pid, 'started the member service');
        return;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    if (!exited) process.kill(pid, 'SIGKILL');
    const tail = (await fs.readFile(this.logFile, 'utf8').catch(() => '')).trim().split('\n').slice(-3).join('; ');
    if (/EADDRINUSE/.test(tail)) {
      // Not ours (findRunning found none): something else holds the address.
      throw new CsiError('FAILED_PRECONDITION', `member service: ${this.address} is in use by another process, not this node's member service (${this.eventsFile}); free the port or set another LLRAID_MEMBER_SERVICE_LISTEN: ${tail}`);
    }
    throw new CsiError('FAILED_PRECONDITION', `member service: expected it to listen on ${this.address}, it ${exited ? 'exited' : 'did not within the start timeout'}: ${tail}`);
  }

  /** Whether the events file has a TLS `listening` event past `offset`. */
  private async listeningSince(offset: number): Promise<boolean> {
    const text = await fs.readFile(this.eventsFile).then((b) => b.subarray(offset).toString('utf8'), () => '');
    return text.split('\n').some((line) => {
      try {
        const e = JSON.parse(line) as { type?: string; tls?: boolean };
        return e.type === 'listening' && e.tls === true;
      } catch {
        return false;
      }
    });
  }

  /** Restarts a service that died (or adopts one that another runner started meanwhile). */
  private async check(): Promise<void> {
    if (this.checking || this.closed) return;
    if (this.pid !== undefined && !(await waitExit(this.pid, 0))) return;
    this.checking = true;
    try {
      if (this.pid !== undefined) {
        const ran = Date.now() - this.startedAt;
        if (ran >= (this.options.stableMs ?? 60_000)) this.delay = this.options.minDelayMs ?? 1000;
        this.options.log(`member service (pid ${this.pid}) exited after ${Math.round(ran / 1000)} s; restarting in ${this.delay} ms`);
        this.pid = undefined;
      }
      await new Promise((r) => setTimeout(r, this.delay));
      this.delay = Math.min(this.delay * 2, this.options.maxDelayMs ?? 30_000);
      if (this.closed) return;
      await this.adoptOrStart();
    } catch (err) {
      this.options.log(`member service: restart failed: ${(err as Error).message}`);
    } finally {
      this.checking = false;
    }
  }
}
