// Shared fixtures of the NBD tests: running `llraid serve` from the build, and running
// outside NBD clients (libnbd tools, qemu, fio) as child processes.

import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readEngineEvents, type EngineEvent, type TimedEngineEvent } from '../../src/engine/events.js';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);
export const ROOT = new URL('../../', import.meta.url).pathname;
export const CLI = join(ROOT, 'dist/src/cli/bin.cjs');

/** nbdsh runs on the system python (python3-libnbd), not on whatever python3 is first in PATH. */
export const TOOL_ENV = { ...process.env, PATH: `/usr/bin:/bin:/usr/sbin:/sbin:${process.env.PATH ?? ''}`, LIBNBD_DEBUG: '0' };

export async function tool(cmd: string, args: string[], options: { input?: string; timeoutMs?: number } = {}): Promise<string> {
  const child = execFileP(cmd, args, { env: TOOL_ENV, maxBuffer: 64 * 1024 * 1024, timeout: options.timeoutMs ?? 300_000 });
  if (options.input !== undefined) {
    child.child.stdin!.end(options.input);
  }
  try {
    const { stdout } = await child;
    return stdout;
  } catch (err) {
    const e = err as { stderr?: string; stdout?: string; message: string };
    throw new Error(`${cmd} ${args.join(' ')} failed: ${e.message}\nstdout: ${e.stdout ?? ''}\nstderr: ${e.stderr ?? ''}`, { cause: err });
  }
}

export function hasTool(cmd: string): boolean {
  return ['/usr/bin', '/bin', '/usr/sbin', '/sbin', '/usr/local/bin'].some((d) => existsSync(join(d, cmd)));
}

export interface ServeProcess {
  child: ChildProcess;
  uri: string;
  stdout: () => string;
  stderr: () => string;
  /** The engine's events so far (its --events file), oldest first. */
  events(): Promise<TimedEngineEvent[]>;
  /** Resolves with the first event of `type` (waiting up to `ms`), rejects if the engine exits first. */
  waitForEvent<T extends EngineEvent['type']>(type: T, ms?: number): Promise<Extract<TimedEngineEvent, { type: T }>>;
  /** Sends SIGTERM and resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/**
 * Starts the built `llraid serve` with `args` and an events file of its own; resolves once the
 * engine reports it is serving (its `serving` event: what programs read, never the text).
 * `nodeFlags` go to node before the CLI (ENGINE_NODE_FLAGS: the engine as the plugin starts it).
 */
export async function startServe(args: string[], options: { nodeFlags?: readonly string[] } = {}): Promise<ServeProcess> {
  if (!existsSync(CLI)) throw new Error(`expected the built CLI at ${CLI}: run npm run build first`);
  const eventsDir = mkdtempSync(join(tmpdir(), 'llraid-events-'));
  // Tests read the events after the engine stopped, so the file goes with the test process.
  process.once('exit', () => rmSync(eventsDir, { recursive: true, force: true }));
  const eventsFile = join(eventsDir, 'events.jsonl');
  const child = spawn(process.execPath, [...(options.nodeFlags ?? []), CLI, 'serve', ...args, '--events', eventsFile], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  let exitCode: number | null | undefined;
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve((exitCode = code))));
  const events = (): Promise<TimedEngineEvent[]> => readEngineEvents(eventsFile);
  const waitForEvent = async <T extends EngineEvent['type']>(type: T, ms = 20_000): Promise<Extract<TimedEngineEvent, { type: T }>> => {
    const deadline = Date.now() + ms;
    for (;;) {
      const e = (await events()).find((x) => x.type === type);
      if (e) return e as Extract<TimedEngineEvent, { type: T }>;
      if (exitCode !== undefined) throw new Error(`llraid serve exited with ${exitCode} before a ${type} event; stderr: ${err}`);
      if (Date.now() > deadline) throw new Error(`llraid serve: no ${type} event within ${ms} ms; stderr: ${err}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  const serving = await waitForEvent('serving');
  return {
    child,
    uri: serving.uri,
    stdout: () => out,
    stderr: () => err,
    events,
    waitForEvent,
    stop: async (signal = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

/** The engine's last two events are `stopping` (for `why`) then `stopped`: it stopped cleanly. */
export async function stoppedCleanly(serve: ServeProcess, why: string): Promise<void> {
  const tail = (await serve.events()).slice(-2).map((e) => (e.type === 'stopping' ? `stopping: ${e.why}` : e.type));
  if (tail.join(', ') !== `stopping: ${why}, stopped`) throw new Error(`expected the engine to stop cleanly after ${why}, its last events are: ${tail.join(', ')}`);
}

/** A buffer of `n` pseudo-random bytes from a seed, so failures can be reproduced. */
export function patternBytes(n: number, seed: number): Buffer {
  const out = Buffer.allocUnsafe(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}
