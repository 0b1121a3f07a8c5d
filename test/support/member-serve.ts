// Runs `llraid member-serve` (the member service of issue 13) on a node of a Netns cluster, as a
// real process in that node's namespace, for the end-to-end tests of members on other nodes.
// The CLI contract (docs: issue 13 plan): `llraid member-serve --listen HOST:PORT --tls-cert FILE
// --tls-key FILE --tls-ca FILE DIR...`, each member under the DIRs exported by its device UUID.

import { buildCli } from './cli.js';
import type { NodeCerts } from './certs.js';
import type { Netns, NsProcess } from './netns.js';

/** The NBD port (IANA); every node has its own address, so every member service can use it. */
export const MEMBER_PORT = 10809;

export interface MemberServeOptions {
  /** The node's certificates: its server certificate and key, and the CA it trusts. */
  certs: NodeCerts;
  port?: number;
  /** Further arguments, placed before the DIRs. */
  extraArgs?: string[];
  /** The node to probe the port from (default: the service's own node). */
  probeFrom?: string;
  /** How long the service may take to accept connections (default 20 s). */
  startTimeoutMs?: number;
}

export interface MemberServe {
  readonly node: string;
  readonly addr: string;
  readonly port: number;
  readonly proc: NsProcess;
  /** `nbds://ADDR:PORT/UUID`: how an engine names a member of this service. */
  uri(uuid: string): string;
  stdout(): string;
  stderr(): string;
  /** SIGTERM (or `signal`), SIGKILL after `graceMs`; resolves with how it exited. */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * Starts `llraid member-serve` for `dirs` on `node` (listening on the node's address) and
 * resolves once its port accepts TCP connections; rejects with its output if it exits first or
 * is not listening within `startTimeoutMs`. The Netns stops it on destroy() if the test does not.
 */
export async function startMemberServe(net: Netns, node: string, dirs: readonly string[], options: MemberServeOptions): Promise<MemberServe> {
  const cli = await buildCli();
  const addr = net.addr(node);
  const port = options.port ?? MEMBER_PORT;
  const { certs } = options;
  const args = [
    cli,
    'member-serve',
    '--listen', `${addr}:${port}`,
    '--tls-cert', certs.server.cert,
    '--tls-key', certs.server.key,
    '--tls-ca', certs.ca,
    ...(options.extraArgs ?? []),
    ...dirs,
  ];
  const proc = net.spawn(node, process.execPath, args);
  const timeoutMs = options.startTimeoutMs ?? 20_000;
  const exitedEarly = proc.exited.then(({ code, signal }) => {
    throw new Error(`llraid member-serve on ${node} exited (${code ?? signal}) before it accepted connections on ${addr}:${port}\nstdout: ${proc.stdout()}\nstderr: ${proc.stderr()}`);
  });
  try {
    await Promise.race([net.waitForPort(options.probeFrom ?? node, addr, port, timeoutMs), exitedEarly]);
  } catch (err) {
    await proc.stop('SIGKILL');
    if (err instanceof Error && !err.message.startsWith('llraid member-serve')) {
      err.message += `\nllraid member-serve on ${node}: stdout: ${proc.stdout()}\nstderr: ${proc.stderr()}`;
    }
    throw err;
  }
  exitedEarly.catch(() => undefined); // its exit after start is the test's business
  return {
    node,
    addr,
    port,
    proc,
    uri: (uuid) => `nbds://${addr}:${port}/${uuid}`,
    stdout: () => proc.stdout(),
    stderr: () => proc.stderr(),
    stop: (signal, graceMs) => proc.stop(signal, graceMs),
  };
}
