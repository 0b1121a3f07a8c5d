// The fixture of the end-to-end tests of members on other nodes (issue 13): a cluster of network
// namespaces (test/support/netns.ts), certificates from openssl, one disk directory and one
// `llraid member-serve` (TLS on TCP) per member node, and `llraid` commands and engines run as
// real processes inside a node's namespace. Unix socket paths are shared by every namespace, so
// the test process reaches an engine's NBD socket and control socket from the host side.

import { closeSync, mkdirSync, openSync, readFileSync, ftruncateSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { readEngineEvents, type EngineEvent, type TimedEngineEvent } from '../../src/engine/events.js';
import { buildCli } from '../support/cli.js';
import { makeCerts, type TestCerts } from '../support/certs.js';
import { startMemberServe, type MemberServe } from '../support/member-serve.js';
import { Netns, type ExecResult, type NsProcess } from '../support/netns.js';
import { tempDir } from '../support/temp-dir.js';

export const MiB = 1024 * 1024;

export interface Cluster {
  net: Netns;
  certs: TestCerts;
  dir: string;
  cli: string;
  /** Each node's disk directory (`<dir>/disks/<node>`). */
  disks(node: string): string;
  /** `--epoch N --tls-cert/--tls-key/--tls-ca` of `node`'s engine certificates. */
  remoteArgs(node: string, epoch: number | bigint, memberTimeoutS?: number): string[];
  /** Runs `llraid args` inside `node` to the end, never throwing on a non-zero exit. */
  llraid(node: string, args: readonly string[], timeoutMs?: number): Promise<{ code: number; stdout: string; stderr: string }>;
  /** Starts a member service on `node` over its disk directory. */
  memberServe(node: string, extraArgs?: string[]): Promise<MemberServe>;
  /** A blank sparse .img of `bytes` in `node`'s disk directory; its path. */
  blank(node: string, name: string, bytes: number): string;
  /** Starts `llraid serve args` inside `node` on a unix socket; resolves once it serves. */
  serve(node: string, tag: string, args: readonly string[]): Promise<Engine>;
}

export interface Engine {
  proc: NsProcess;
  /** The NBD unix socket (plain; reachable from the host). */
  socket: string;
  /** `nbd+unix:///?socket=...` for fio and libnbd. */
  uri: string;
  control: string;
  events(): Promise<TimedEngineEvent[]>;
  waitForEvent<T extends EngineEvent['type']>(type: T, ms?: number, after?: number): Promise<Extract<TimedEngineEvent, { type: T }>>;
  stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export async function makeCluster(t: { after(fn: () => Promise<void> | void): void }, name: string, nodes: string[], base?: string, subnetPrefix?: string): Promise<Cluster> {
  const cli = await buildCli();
  const dir = tempDir(t, name, base);
  const net = await Netns.create(nodes, { owner: t, ...(subnetPrefix === undefined ? {} : { subnetPrefix }) });
  const certs = await makeCerts(dir, net.addrs());
  const disks = (node: string): string => join(dir, 'disks', node);
  for (const n of nodes) mkdirSync(disks(n), { recursive: true });
  const remoteArgs = (node: string, epoch: number | bigint, memberTimeoutS = 2): string[] => {
    const c = certs.node(node);
    return ['--epoch', String(epoch), '--tls-cert', c.client.cert, '--tls-key', c.client.key, '--tls-ca', c.ca, '--member-timeout', String(memberTimeoutS)];
  };
  const llraid = async (node: string, args: readonly string[], timeoutMs = 60_000): Promise<{ code: number; stdout: string; stderr: string }> => {
    try {
      const r: ExecResult = await net.exec(node, process.execPath, [cli, ...args], { timeoutMs });
      return { code: 0, ...r };
    } catch (err) {
      // netns.ts's run() puts the output in the message: split it back.
      const m = /: exit (\S+)\nstdout: ([\s\S]*)\nstderr: ([\s\S]*)$/.exec((err as Error).message);
      if (!m) throw err;
      return { code: Number(m[1]), stdout: m[2]!, stderr: m[3]! };
    }
  };
  return {
    net,
    certs,
    dir,
    cli,
    disks,
    remoteArgs,
    llraid,
    memberServe: (node, extraArgs = []) => startMemberServe(net, node, [disks(node)], {
      certs: certs.node(node),
      extraArgs: ['--socket', join(dir, `ms-${node}.sock`), '--events', join(dir, `ms-${node}.jsonl`), ...extraArgs],
    }),
    blank: (node, file, bytes) => {
      const path = join(disks(node), file);
      const fd = openSync(path, 'w');
      ftruncateSync(fd, bytes);
      closeSync(fd);
      return path;
    },
    serve: async (node, tag, args) => {
      const socket = join(dir, `${tag}.sock`);
      const control = join(dir, `${tag}.ctl`);
      const eventsFile = join(dir, `${tag}.events.jsonl`);
      const proc = net.spawn(node, process.execPath, [cli, 'serve', '--socket', socket, '--control', control, '--events', eventsFile, ...args]);
      const events = (): Promise<TimedEngineEvent[]> => readEngineEvents(eventsFile).catch(() => []);
      const waitForEvent = async <T extends EngineEvent['type']>(type: T, ms = 20_000, after = 0): Promise<Extract<TimedEngineEvent, { type: T }>> => {
        const deadline = Date.now() + ms;
        for (;;) {
          const e = (await events()).slice(after).find((x) => x.type === type);
          if (e) return e as Extract<TimedEngineEvent, { type: T }>;
          if (proc.hasExited()) throw new Error(`llraid serve (${tag}) exited before a ${type} event; stderr: ${proc.stderr()}`);
          if (Date.now() > deadline) {
            const seen = (await events()).map((x) => JSON.stringify(x)).join('\n');
            throw new Error(`llraid serve (${tag}): no ${type} event within ${ms} ms; events:\n${seen}\nstderr: ${proc.stderr()}`);
          }
          await sleep(25);
        }
      };
      await waitForEvent('serving', 30_000);
      return { proc, socket, uri: `nbd+unix:///?socket=${socket}`, control, events, waitForEvent, stop: () => proc.stop('SIGTERM', 10_000) };
    },
  };
}

/** The device UUID of a local member file, from `llraid examine --json` run on the host. */
export async function deviceUuidOf(c: Cluster, node: string, member: string, extra: string[] = []): Promise<string> {
  const r = await c.llraid(node, ['examine', '--json', ...extra, member]);
  if (r.code !== 0) throw new Error(`examine ${member}: ${r.stderr}`);
  return (JSON.parse(r.stdout) as { superblock: { deviceUuid: string } }).superblock.deviceUuid;
}

/** The data offset (bytes) of a member, from `llraid examine --json`. */
export async function examineJson(c: Cluster, node: string, member: string, extra: string[] = []): Promise<ExamineJson> {
  const r = await c.llraid(node, ['examine', '--json', ...extra, member]);
  if (r.code !== 0) throw new Error(`examine ${member}: ${r.stderr}`);
  return JSON.parse(r.stdout) as ExamineJson;
}

export interface ExamineJson {
  superblock: { deviceUuid: string; arrayUuid?: string; dataOffset: number; dataSize: number } & Record<string, unknown>;
  bitmap?: Record<string, unknown>;
}

export interface MemberJson {
  name: string;
  state: string;
  failure: string | null;
  remote: boolean;
  writeMostly: boolean;
  recovery: { kind: string; bytesDone: number; bytesToCopy: number } | null;
}

export interface StatusJson {
  state: string;
  fenced: string | null;
  members: MemberJson[];
  sync: unknown;
  resyncPending: unknown;
  bitmap?: { chunkSize: number; counts: Record<string, number> };
}

/** `llraid status --json --control` of an engine, from the host. */
export async function statusOf(c: Cluster, engine: Engine): Promise<StatusJson> {
  const { runCli } = await import('../support/cli.js');
  const r = await runCli(['status', '--json', '--control', engine.control]);
  if (r.code !== 0) throw new Error(`status --control ${engine.control}: exit ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout) as StatusJson;
}

/** Polls `fn` every 50 ms until it returns a value other than undefined, at most `ms`. */
export async function until<T>(what: string, fn: () => Promise<T | undefined> | T | undefined, ms = 20_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(50);
  }
}

/** `len` bytes of a member file's data region at `offset` (relative to the data start). */
export function memberData(path: string, dataOffset: number, offset: number, len: number): Buffer {
  const all = readFileSync(path);
  return all.subarray(dataOffset + offset, dataOffset + offset + len);
}
