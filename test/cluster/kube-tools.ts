// Runs the real kubectl and helm binaries of the harness against its API server, and waits for
// conditions the controllers bring about. Failures carry the command line and its stderr, so a
// failing cluster test says what the API server answered.

import { execFile } from 'node:child_process';
import type { ClusterEnv } from './cluster-env.js';

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export class ToolError extends Error {
  override readonly name = 'ToolError';
  constructor(
    readonly code: 'EEXIT' | 'ETIMEOUT',
    message: string,
    readonly result?: RunResult,
  ) {
    super(message);
  }
}

export class KubeTools {
  constructor(private readonly env: ClusterEnv) {}

  /** Runs a binary from the harness bin dir; never throws on a non-zero exit. */
  run(tool: string, args: string[], input?: string): Promise<RunResult> {
    return new Promise((resolve) => {
      const child = execFile(
        `${this.env.bin}/${tool}`,
        args,
        {
          env: { ...process.env, KUBECONFIG: this.env.kubeconfig, HELM_CACHE_HOME: `${this.env.stateDir}/helm/cache`, HELM_CONFIG_HOME: `${this.env.stateDir}/helm/config`, HELM_DATA_HOME: `${this.env.stateDir}/helm/data` },
          maxBuffer: 64 * 1024 * 1024,
          timeout: 120_000,
        },
        (err, stdout, stderr) => {
          const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
          resolve({ code, stdout, stderr });
        },
      );
      if (input !== undefined) child.stdin?.end(input);
    });
  }

  /** Runs a tool and returns stdout; a non-zero exit is a ToolError naming the command. */
  async ok(tool: string, args: string[], input?: string): Promise<string> {
    const result = await this.run(tool, args, input);
    if (result.code !== 0) {
      throw new ToolError('EEXIT', `${tool} ${args.join(' ')}: expected exit 0, found ${result.code}: ${result.stderr.trim()}`, result);
    }
    return result.stdout;
  }

  kubectl(args: string[], input?: string): Promise<string> {
    return this.ok('kubectl', args, input);
  }

  helm(args: string[]): Promise<string> {
    return this.ok('helm', args);
  }

  /** `kubectl get -o json`; undefined when the object does not exist. */
  async get<T = KubeObject>(args: string[]): Promise<T | undefined> {
    const result = await this.run('kubectl', ['get', ...args, '-o', 'json']);
    if (result.code !== 0) {
      if (/NotFound|not found/.test(result.stderr)) return undefined;
      throw new ToolError('EEXIT', `kubectl get ${args.join(' ')}: expected exit 0, found ${result.code}: ${result.stderr.trim()}`, result);
    }
    return JSON.parse(result.stdout) as T;
  }

  async list(args: string[]): Promise<KubeObject[]> {
    const list = await this.get<{ items: KubeObject[] }>(args);
    return list?.items ?? [];
  }
}

/** The parts of an API object the tests read; the rest stays untyped. */
export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata: {
    name: string;
    namespace?: string;
    uid?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    deletionTimestamp?: string;
    [k: string]: unknown;
  };
  spec?: Record<string, unknown> & { [k: string]: unknown };
  status?: Record<string, unknown> & { [k: string]: unknown };
  [k: string]: unknown;
}

/**
 * Polls `probe` until it returns a value other than undefined; on timeout throws a ToolError
 * saying what was awaited and, from `describe`, what was found instead.
 */
export async function waitFor<T>(
  what: string,
  timeoutMs: number,
  probe: () => Promise<T | undefined>,
  describe?: () => Promise<string>,
): Promise<Exclude<T, undefined>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value as Exclude<T, undefined>;
    if (Date.now() > deadline) {
      const found = describe ? await describe().catch((e: unknown) => `(could not describe: ${String(e)})`) : 'nothing';
      throw new ToolError('ETIMEOUT', `expected ${what} within ${timeoutMs / 1000}s, found: ${found}`);
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}
