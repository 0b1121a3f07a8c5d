// Test harness: runs the real node plugin (`llraid csi` from dist/, as the Helm chart does) on
// a disk pool of temp directories, and talks to it through a real gRPC client built from
// proto/csi.proto. Shared by the CSI integration tests; not a test file itself.

import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, openSync, closeSync, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { credentials, makeGenericClientConstructor, type Client, type ServiceError } from '@grpc/grpc-js';
import { serviceDefinition, type CsiServiceName } from '../../src/csi/proto.js';

export const cliPath = path.resolve('dist/src/cli/bin.cjs');

type Call = (request: object) => Promise<Record<string, unknown>>;
type Method =
  | 'GetPluginInfo' | 'GetPluginCapabilities' | 'Probe'
  | 'CreateVolume' | 'DeleteVolume' | 'ValidateVolumeCapabilities' | 'ListVolumes' | 'GetCapacity'
  | 'ControllerGetCapabilities' | 'ControllerExpandVolume' | 'ControllerGetVolume'
  | 'CreateSnapshot' | 'DeleteSnapshot' | 'ListSnapshots'
  | 'NodeStageVolume' | 'NodeUnstageVolume' | 'NodePublishVolume' | 'NodeUnpublishVolume'
  | 'NodeGetVolumeStats' | 'NodeExpandVolume' | 'NodeGetCapabilities' | 'NodeGetInfo';
export type CsiClient = Record<Method, Call> & { close(): void };

export function csiClient(socket: string, service: CsiServiceName): CsiClient {
  const Ctor = makeGenericClientConstructor(serviceDefinition(service), service);
  const client = new Ctor(`unix://${socket}`, credentials.createInsecure()) as Client & Record<string, unknown>;
  const out: Record<string, unknown> = { close: () => client.close() };
  for (const name of Object.keys(serviceDefinition(service))) {
    const method = client[name] as (req: object, cb: (err: ServiceError | null, res: unknown) => void) => void;
    out[name] = (request: object) =>
      new Promise((resolve, reject) => method.call(client, request, (err, res) => (err ? reject(err) : resolve(res as Record<string, unknown>))));
  }
  return out as CsiClient;
}

export interface Plugin {
  dir: string;
  /**
   * The plugin's --kubelet-dir: staging and target paths of a test go below it (the plugin
   * refuses any other); the disks, run dir and socket are beside it, outside, as on a node.
   */
  kubeletDir: string;
  disks: string[];
  runDir: string;
  socket: string;
  logFile: string;
  identity: CsiClient;
  controller: CsiClient;
  node: CsiClient;
  /** Starts (or restarts) the plugin process and waits for its socket. */
  start(): Promise<void>;
  /** SIGKILL: a crashed plugin. */
  kill(): Promise<void>;
  /** SIGTERM, then removes the temp dir after tearing down whatever is still staged. */
  close(): Promise<void>;
}

export interface PluginOptions {
  disks?: number;
  attach?: 'fuse' | 'kernel';
  /** Runs the plugin under this command prefix (e.g. `unshare --pid --fork --kill-child`). */
  prefix?: string[];
  /** The engine host's socket: the plugin's engines run there, not under the plugin. */
  engineHost?: string;
  /** The plugin's run dir; default <dir>/run. An engine host and the plugin share it. */
  runDir?: string;
  /** The directory the disks are made in (e.g. an XFS with reflink); default the plugin's temp dir. */
  diskRoot?: string;
  /** More environment for the plugin (LLRAID_* settings that have no option). */
  env?: NodeJS.ProcessEnv;
  /** How long the plugin may take to listen; default 120 s. */
  listenTimeoutMs?: number;
}

export async function startPlugin(options: PluginOptions = {}): Promise<Plugin> {
  if (!existsSync(cliPath)) throw new Error(`${cliPath} is missing: run npm run build first`);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'llraid-csi-'));
  const diskRoot = options.diskRoot === undefined ? dir : mkdtempSync(path.join(options.diskRoot, 'llraid-disks-'));
  const disks = Array.from({ length: options.disks ?? 3 }, (_, i) => path.join(diskRoot, `disk-${i}`));
  for (const d of disks) mkdirSync(d);
  const kubeletDir = path.join(dir, 'kubelet');
  mkdirSync(kubeletDir);
  const runDir = options.runDir ?? path.join(dir, 'run');
  const socket = path.join(dir, 'csi.sock');
  const logFile = path.join(dir, 'plugin.log');
  let child: ChildProcess | undefined;
  const clients = {
    identity: csiClient(socket, 'Identity'),
    controller: csiClient(socket, 'Controller'),
    node: csiClient(socket, 'Node'),
  };
  const plugin: Plugin = {
    dir, kubeletDir, disks, runDir, socket, logFile, ...clients,
    async start() {
      await fs.rm(socket, { force: true });
      const log = openSync(logFile, 'a');
      const argv = [process.execPath, cliPath, 'csi', '--endpoint', `unix://${socket}`, '--node-id', 'test-node',
        '--disks', disks.join(','), '--attach', options.attach ?? 'fuse', '--run-dir', runDir, '--kubelet-dir', kubeletDir,
        ...(options.engineHost === undefined ? [] : ['--engine-host', options.engineHost])];
      const [cmd, ...args] = [...(options.prefix ?? []), ...argv] as [string, ...string[]];
      child = spawn(cmd, args, { stdio: ['ignore', log, log], env: { ...process.env, ...options.env } });
      closeSync(log);
      const deadline = Date.now() + (options.listenTimeoutMs ?? 120_000);
      while (!existsSync(socket) && child.exitCode === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      if (!existsSync(socket)) throw new Error(`plugin did not listen: ${await fs.readFile(logFile, 'utf8')}`);
    },
    async kill() {
      if (!running(child)) return;
      const exited = new Promise((r) => child!.once('exit', r));
      child.kill('SIGKILL');
      await exited;
    },
    async close() {
      for (const c of Object.values(clients)) c.close();
      // A child killed by a signal has exitCode null too: waiting for its 'exit' would hang.
      if (running(child)) {
        const exited = new Promise((r) => child!.once('exit', r));
        // Under a prefix (unshare), SIGTERM goes to the plugin itself: unshare passes no signals on.
        const pid = options.prefix === undefined ? child.pid : await firstChild(child.pid!);
        if (pid === undefined) child.kill('SIGKILL');
        else process.kill(pid, 'SIGTERM');
        await exited;
      }
      await teardown(dir, runDir);
      await fs.rm(dir, { recursive: true, force: true });
      if (diskRoot !== dir) await fs.rm(diskRoot, { recursive: true, force: true });
    },
  };
  await plugin.start();
  return plugin;
}

/** The first child process of `pid` (the command an `unshare --fork` runs), if it has one. */
export async function firstChild(pid: number): Promise<number | undefined> {
  const text = await fs.readFile(`/proc/${pid}/task/${pid}/children`, 'utf8').catch(() => '');
  const first = text.trim().split(/\s+/)[0];
  return first ? Number(first) : undefined;
}

function running(child: ChildProcess | undefined): child is ChildProcess {
  return child !== undefined && child.exitCode === null && child.signalCode === null;
}

/** Unmounts, detaches and stops whatever a test left behind under `dir`. */
export async function teardown(dir: string, runDir: string): Promise<void> {
  const { run } = await import('../../src/csi/exec.js');
  const { listMounts } = await import('../../src/csi/mounts.js');
  const { findProcesses, waitExit } = await import('../../src/engine/processes.js');
  const mounts = (await listMounts()).filter((m) => m.mountPoint.startsWith(dir + '/') && !m.mountPoint.startsWith(runDir + '/'));
  for (const m of mounts.reverse()) await run('umount', ['-l', m.mountPoint], { okCodes: [0, 1, 32] });
  const loops = await run('losetup', ['--list', '--json', '--output', 'NAME,BACK-FILE']);
  if (loops.stdout.trim()) {
    const list = JSON.parse(loops.stdout) as { loopdevices: Array<{ name: string; 'back-file': string | null }> };
    for (const l of list.loopdevices) if ((l['back-file'] ?? '').startsWith(runDir + '/')) await run('losetup', ['-d', l.name], { okCodes: [0, 1] });
  }
  const fuse = (await listMounts()).filter((m) => m.mountPoint.startsWith(runDir + '/'));
  for (const m of fuse.reverse()) await run('umount', ['-l', m.mountPoint], { okCodes: [0, 1, 32] });
  // The member service the plugin ran (without an engine host), which outlives the plugin.
  for (const p of await findProcesses(path.join(runDir, 'member-service.events.jsonl'))) {
    process.kill(p.pid, 'SIGTERM');
    await waitExit(p.pid, 30_000);
  }
  const entries = await fs.readdir(runDir).catch(() => [] as string[]);
  for (const id of entries) {
    for (const p of await findProcesses(path.join(runDir, id, 'engine.sock'))) {
      process.kill(p.pid, 'SIGTERM');
      await waitExit(p.pid, 30_000);
    }
  }
}

export function mountCap(fsType = 'ext4'): object {
  return { mount: { fs_type: fsType, mount_flags: [] }, access_mode: { mode: 'SINGLE_NODE_WRITER' } };
}

export function blockCap(): object {
  return { block: {}, access_mode: { mode: 'SINGLE_NODE_WRITER' } };
}

/** Resolves with the gRPC status code a call failed with (fails the test if it succeeded). */
export interface CreatedSnapshot { snapshot_id: string; source_volume_id: string; size_bytes: number; ready_to_use: boolean; creation_time: { seconds: number; nanos?: number } }

/**
 * CreateSnapshot, called again as the CO does while the snapshot is not ready to use (a staged
 * volume's is copied by its engine after the cut); → the snapshot, ready.
 */
export async function readySnapshot(controller: CsiClient, sourceVolumeId: string, name: string): Promise<CreatedSnapshot> {
  for (let i = 0; i < 400; i++) {
    const s = (await controller.CreateSnapshot({ source_volume_id: sourceVolumeId, name })).snapshot as CreatedSnapshot;
    if (s.ready_to_use) return s;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`snapshot ${name} of volume ${sourceVolumeId} not ready to use after 20 s`);
}

export async function codeOf(p: Promise<unknown>): Promise<number> {
  try {
    await p;
  } catch (err) {
    return (err as ServiceError).code;
  }
  throw new Error('expected the call to fail, it succeeded');
}
