// The volume engines: one `llraid serve` process per staged volume (DESIGN.md §1), serving the
// assembled array on <runDir>/<volumeId>/engine.sock and taking control requests (status, grow)
// on control.sock beside it. Engines are started detached so that a plugin restart leaves them
// (and the pods' I/O) running; a restarted plugin finds them by their socket argument in /proc.
// The supervisor restarts an engine that dies while its volume is meant to be staged.

import { spawn } from 'node:child_process';
import { closeSync, openSync, promises as fs } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { controlRequest } from './control/client.js';
import type { ControlReply, ControlRequest } from './control/protocol.js';
import { SupervisorError } from './errors.js';
import { findProcesses, isAlive, waitExit, type ProcessInfo } from './processes.js';

/**
 * Environment variables every engine gets on top of its parent's, unless the parent has set them
 * itself (to try another value). MALLOC_ARENA_MAX=1: glibc gives each thread that allocates an
 * arena of its own (V8's compiler and collector threads, libuv's pool), and what they free stays
 * resident there; an engine's busy threads are few and allocate little, so one arena costs no
 * CPU per request that bench:nbd sees, and holds less: see docs/architecture.md, "What an engine
 * costs". GLIBC_TUNABLES fixes glibc's mmap threshold at its default (128 KiB) from the start,
 * which also stops glibc moving its trim threshold: otherwise freeing a block it had mmapped
 * raises the threshold to that block's size, and from then on 1 MiB payloads come from its heap
 * and stay resident there when freed (a raid5 engine's heap reached 22-30 MiB over fio's 1M
 * workloads that way, 10 with the threshold fixed: smaps, malloc_stats; block/give-back.ts fixed
 * it too, but only at its first call, after a burst). Both have to be in the environment: glibc
 * reads them once, before node's first allocation.
 */
export const ENGINE_ENV: Readonly<Record<string, string>> = {
  MALLOC_ARENA_MAX: '1',
  GLIBC_TUNABLES: 'glibc.malloc.mmap_threshold=131072',
};

/** The environment an engine is started with: `base` (this process's) and ENGINE_ENV. */
export function engineEnvironment(base: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  return { ...ENGINE_ENV, ...base };
}

export interface EngineOptions {
  /** argv prefix that runs the llraid CLI, e.g. [node, dist/src/cli/bin.cjs]. */
  command: string[];
  runDir: string;
  /** How long a clean stop (bitmap flush, superblocks clean) may take before SIGKILL. */
  stopTimeoutMs?: number;
  /** How often the supervisor checks the engines it keeps alive. */
  superviseIntervalMs?: number;
  /** More `serve` options for every engine (resync speed limits, bitmap daemon period). */
  serveArgs?: string[];
  log?: (message: string) => void;
}

/**
 * What the node service asks of a node's engines, whoever runs them: an EngineSupervisor in the
 * plugin's own process tree, or the engine host's over its socket (engine-host-client.ts).
 */
export interface Engines {
  socket(volumeId: string): string;
  controlSocket(volumeId: string): string;
  control(volumeId: string, req: ControlRequest): Promise<ControlReply & { ok: true }>;
  find(volumeId: string): Promise<ProcessInfo | undefined>;
  start(volumeId: string, sourceArgs: string[]): Promise<void>;
  stop(volumeId: string): Promise<void>;
  adopt(volumeId: string, sourceArgs: string[]): Promise<void>;
  isWanted(volumeId: string): Promise<boolean>;
}

export class EngineSupervisor implements Engines {
  /** Volumes whose engine must run, with the `serve` arguments naming their source. */
  private readonly wanted = new Map<string, string[]>();
  private timer: NodeJS.Timeout | undefined;
  private restarting = new Set<string>();

  constructor(private readonly options: EngineOptions) {}

  socket(volumeId: string): string {
    return path.join(this.options.runDir, volumeId, 'engine.sock');
  }

  logFile(volumeId: string): string {
    return path.join(this.options.runDir, volumeId, 'engine.log');
  }

  /** The engine's events (events.ts), one JSON line each, appended by every run of its engine. */
  eventsFile(volumeId: string): string {
    return path.join(this.options.runDir, volumeId, 'events.jsonl');
  }

  controlSocket(volumeId: string): string {
    return path.join(this.options.runDir, volumeId, 'control.sock');
  }

  /** One control request to the volume's running engine; rejects with EngineError on refusal. */
  control(volumeId: string, req: ControlRequest): Promise<ControlReply & { ok: true }> {
    return controlRequest(this.controlSocket(volumeId), req);
  }

  /** The running engine of a volume, if any. */
  async find(volumeId: string): Promise<ProcessInfo | undefined> {
    const procs = await findProcesses(this.socket(volumeId));
    return procs.find((p) => p.argv.includes('serve'));
  }

  /**
   * Starts the engine unless one runs, and resolves once its socket accepts connections.
   * `sourceArgs` are the serve arguments naming what to serve (the array's member files).
   */
  async start(volumeId: string, sourceArgs: string[]): Promise<void> {
    this.wanted.set(volumeId, sourceArgs);
    const running = await this.find(volumeId);
    if (running) {
      await this.waitReady(volumeId, running.pid);
      return;
    }
    const dir = path.join(this.options.runDir, volumeId);
    await fs.mkdir(dir, { recursive: true, mode: 0o700 });
    await fs.rm(this.socket(volumeId), { force: true });
    const log = openSync(this.logFile(volumeId), 'a');
    const [cmd, ...prefix] = this.options.command;
    if (!cmd) throw new SupervisorError('ESTART', 'engine command is empty');
    const args = [
      ...prefix, 'serve', '--socket', this.socket(volumeId), '--control', this.controlSocket(volumeId), '--export-name', volumeId, '--events', this.eventsFile(volumeId),
      ...(this.options.serveArgs ?? []), ...sourceArgs,
    ];
    const child = spawn(cmd, args, { detached: true, stdio: ['ignore', log, log], env: engineEnvironment() });
    closeSync(log);
    child.unref();
    const pid = child.pid;
    if (pid === undefined) throw new SupervisorError('ESTART', `engine for volume ${volumeId}: could not start ${cmd}`);
    this.options.log?.(`engine ${volumeId}: started pid ${pid}`);
    await this.waitReady(volumeId, pid);
  }

  private async waitReady(volumeId: string, pid: number): Promise<void> {
    const deadline = Date.now() + 120_000;
    while (Date.now() < deadline) {
      // The control socket, not the NBD one: an engine listens on its NBD socket before it
      // assembles (so two engines never assemble one volume), and on its control socket after.
      if (await canConnect(this.controlSocket(volumeId))) return;
      if (!isAlive(pid) || (await waitExit(pid, 0))) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const tail = (await fs.readFile(this.logFile(volumeId), 'utf8').catch(() => '')).trim().split('\n').slice(-4).join('; ');
    throw new SupervisorError('ESTART', `engine for volume ${volumeId}: expected it to serve on ${this.socket(volumeId)}, it did not: ${tail}`);
  }

  /** Stops the engine cleanly (SIGTERM: array stopped clean), SIGKILL after the timeout. */
  async stop(volumeId: string): Promise<void> {
    this.wanted.delete(volumeId);
    const running = await this.find(volumeId);
    if (!running) return;
    process.kill(running.pid, 'SIGTERM');
    if (!(await waitExit(running.pid, this.options.stopTimeoutMs ?? 120_000))) {
      process.kill(running.pid, 'SIGKILL');
      await waitExit(running.pid, 10_000);
      throw new SupervisorError('ESTOP', `engine for volume ${volumeId}: did not stop within ${this.options.stopTimeoutMs ?? 120_000} ms, killed`);
    }
    this.options.log?.(`engine ${volumeId}: stopped`);
  }

  /** Keeps the engine of `volumeId` alive from now on (a restarted plugin adopting it). */
  adopt(volumeId: string, sourceArgs: string[]): Promise<void> {
    this.wanted.set(volumeId, sourceArgs);
    return Promise.resolve();
  }

  isWanted(volumeId: string): Promise<boolean> {
    return Promise.resolve(this.wanted.has(volumeId));
  }

  /**
   * Takes over the engines already running under this run directory (started by an earlier
   * supervisor in this PID namespace): they become wanted with the arguments they run with.
   * Resolves with their volume ids.
   */
  async adoptRunning(): Promise<string[]> {
    const adopted: string[] = [];
    for (const p of await findProcesses('serve')) {
      const socket = p.argv[p.argv.indexOf('--socket') + 1];
      const name = p.argv.indexOf('--export-name');
      if (socket === undefined || name < 0 || path.dirname(path.dirname(socket)) !== this.options.runDir) continue;
      const volumeId = path.basename(path.dirname(socket));
      if (socket !== this.socket(volumeId) || p.argv[name + 1] !== volumeId) continue;
      // What follows --export-name ID (and the --events file this supervisor adds) is the source.
      const rest = p.argv.slice(name + 2);
      this.wanted.set(volumeId, rest[0] === '--events' ? rest.slice(2) : rest);
      adopted.push(volumeId);
    }
    return adopted;
  }

  /** Stops every engine this supervisor wants, cleanly (stop() each, in parallel). */
  async stopAll(): Promise<void> {
    await Promise.allSettled([...this.wanted.keys()].map((id) => this.stop(id)));
  }

  /** Starts the watch loop: an engine that died while wanted is started again. */
  supervise(): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.check(), this.options.superviseIntervalMs ?? 2000);
    this.timer.unref();
  }

  private async check(): Promise<void> {
    for (const [volumeId, args] of this.wanted) {
      if (this.restarting.has(volumeId)) continue;
      if (await this.find(volumeId)) continue;
      this.restarting.add(volumeId);
      this.options.log?.(`engine ${volumeId}: not running while staged, restarting`);
      try {
        if (this.wanted.has(volumeId)) await this.start(volumeId, args);
      } catch (err) {
        this.options.log?.(`engine ${volumeId}: restart failed: ${(err as Error).message}`);
      } finally {
        this.restarting.delete(volumeId);
      }
    }
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}

function canConnect(socket: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(socket);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}
