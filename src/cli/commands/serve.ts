// `llraid serve`: assembles an array from its members (or opens one file) and serves it over NBD
// on a unix socket or on loopback TCP until SIGTERM/SIGINT (or a `stop` on its control socket);
// then it answers what is in flight and stops the array cleanly (bitmap flushed, superblocks
// clean) or flushes and closes the file. With --control the array also takes the commands of
// control-protocol.ts (status, fail, re-add, grow, ...) while it serves.

import type { Command } from 'commander';
import { FileDevice } from '../../block/file-device.js';
import type { BlockDevice } from '../../block/block-device.js';
import { CountingDevice } from '../../block/counting-device.js';
import { checkSocketPath } from '../../block/socket-file.js';
import { assembleArray, type AssemblyReport, type MdArray } from '../../md/index.js';
import { formatBitmapCheck } from '../status-format.js';
import { NbdServer, isNbdError, loopbackAddress, type ListenAddress } from '../../nbd/index.js';
import { ControlServer } from '../../md/control/server.js';
import { UsageError } from '../report-error.js';

interface ServeOptions {
  file?: string;
  socket?: string;
  listen?: string;
  exportName: string;
  readOnly?: boolean;
  direct?: boolean;
  force?: boolean;
  quiet?: boolean;
  control?: string;
  syncSpeedMin?: string;
  syncSpeedMax?: string;
  bitmapDaemonSleep?: string;
}

export function register(program: Command): void {
  program
    .command('serve')
    .description('assemble an array from its members (or open a file) and serve it over NBD until SIGTERM or SIGINT')
    .argument('[members...]', 'member files or devices of the array to assemble and serve')
    .option('--file <path>', 'serve this regular file or block device instead of an array')
    .option('--socket <path>', 'listen on this unix socket (created with mode 0600; a stale socket there is replaced, anything else refused)')
    .option('--listen <host:port>', 'listen on TCP on a loopback address (127.0.0.0/8, ::1); others are refused until NBD has TLS')
    .option('--export-name <name>', 'name of the export (the empty name also selects it)', '')
    .option('--read-only', 'refuse writes')
    .option('--direct', 'open the file with O_DIRECT')
    .option('--force', 'assemble even if members are missing or stale (runs degraded)')
    .option('--quiet', 'do not log misbehaving clients on stderr')
    .option('--control <path>', 'also take control commands (llraid status/grow/... --control PATH) on this unix socket (as --socket: mode 0600, only a stale socket replaced)')
    .option('--sync-speed-min <KiB/s>', 'resync speed kept under application I/O (md sync_speed_min, default 1000)')
    .option('--sync-speed-max <KiB/s>', 'resync speed ceiling (md sync_speed_max, default 200000)')
    .option('--bitmap-daemon-sleep <seconds>', 'llbitmap daemon period for this run (default: what the bitmap holds)')
    .action(async (members: string[], options: ServeOptions) => {
      // Before anything is opened or assembled: a refused address must change nothing.
      const address = await listenAddress(options);
      if ((members.length > 0) === (options.file !== undefined)) {
        throw new UsageError('serve needs either member paths of an array or --file PATH, not both and not neither');
      }
      if (options.file !== undefined && options.control !== undefined) {
        throw new UsageError('--control takes commands for an array; --file serves a plain file');
      }
      const tuning = {
        ...(options.syncSpeedMin === undefined ? {} : { syncSpeedMin: whole(options.syncSpeedMin, '--sync-speed-min') }),
        ...(options.syncSpeedMax === undefined ? {} : { syncSpeedMax: whole(options.syncSpeedMax, '--sync-speed-max') }),
      };
      const daemonSleep = options.bitmapDaemonSleep === undefined ? undefined : whole(options.bitmapDaemonSleep, '--bitmap-daemon-sleep');
      // The addresses are claimed before any member is opened: a second engine started for the
      // same socket, or a --control naming a member file, fails here having touched nothing.
      if ('socket' in address) await checkSocketPath(address.socket, 'NBD socket (--socket)');
      if (options.control !== undefined) await checkSocketPath(options.control, 'control socket (--control)');
      const server = new NbdServer({ log: options.quiet ? undefined : (m) => process.stderr.write(`llraid serve: ${m}\n`) });
      const where = await server.listen(address);
      let device: BlockDevice;
      try {
        if (options.file !== undefined) {
          device = await FileDevice.open(options.file, { readOnly: options.readOnly ?? false, direct: options.direct ?? false, exclusive: true });
        } else {
          const { array, report } = await assembleArray({ members, force: options.force ?? false, ...tuning });
          if (daemonSleep !== undefined && array.bitmap.kind === 'llbitmap') array.bitmap.daemonSleep = daemonSleep;
          announceArray(array, report);
          device = array;
        }
      } catch (err) {
        await server.close();
        throw err;
      }
      await serveUntilStopped(server, where, device, address, options, options.control);
    });
}

function whole(text: string, what: string): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(n) || n < 1) throw new UsageError(`${what}: expected a whole number ≥ 1, found ${JSON.stringify(text)}`);
  return n;
}

/**
 * Says what assembly found and, once the array's own resync (after an unclean stop) ends, how
 * much it covered: operators and the kill -9 torture test read these lines.
 */
function announceArray(array: MdArray, report: AssemblyReport): void {
  const st = array.status();
  const c = st.bitmap.counts;
  const marked = c.dirty + c.needSync + c.syncing + c.needSyncUnwritten + c.syncingUnwritten;
  process.stdout.write(
    `assembled ${st.level} ${JSON.stringify(st.name)} (${st.uuid}), ${st.working}/${st.raidDisks} members in sync, ` +
      `${report.unclean ? 'unclean' : 'clean'}; bitmap ${st.bitmap.kind}: ${marked} marked chunks of ${st.bitmap.chunkSize} bytes\n`,
  );
  for (const s of report.stale) process.stdout.write(`stale member: ${s.name} (${s.reason})\n`);
  if (report.resyncReason !== undefined) process.stdout.write(`resync: ${report.resyncReason}\n`);
  for (const line of formatBitmapCheck(report.bitmap)) process.stdout.write(`${line}\n`);
  // The sync pass starts from a microtask after assembly; look for it once the loop turns.
  setImmediate(() => {
    if (array.status().sync === null) return;
    void array.waitSync().then((s) => {
      if (s) {
        process.stdout.write(
          `${s.mode} ${s.complete ? 'complete' : 'stopped'}: ${s.bytesSynced} bytes synced, ${s.bytesSkipped} skipped, ${s.mismatches} mismatched sectors\n`,
        );
      }
    });
  });
}

/** The unix socket, or the loopback address (a name resolved) and port, to serve on. */
async function listenAddress(options: ServeOptions): Promise<ListenAddress> {
  if ((options.socket === undefined) === (options.listen === undefined)) {
    throw new UsageError('serve needs exactly one of --socket PATH or --listen HOST:PORT');
  }
  if (options.socket !== undefined) return { socket: options.socket };
  const m = /^(.*):(\d+)$/.exec(options.listen!);
  const port = m ? Number(m[2]) : NaN;
  if (!m || port > 65535) throw new UsageError(`--listen expects HOST:PORT, found ${JSON.stringify(options.listen)}`);
  try {
    return { host: await loopbackAddress(m[1]!.replace(/^\[(.*)\]$/, '$1')), port };
  } catch (err) {
    if (!isNbdError(err, 'NBD_LISTEN')) throw err;
    throw new UsageError(`--listen ${options.listen}: ${err.message}; serve on a unix socket (--socket PATH) or a loopback address (--listen 127.0.0.1:${port}) instead`);
  }
}

async function serveUntilStopped(
  server: NbdServer, where: string, device: BlockDevice, address: ListenAddress, options: ServeOptions, control?: string,
): Promise<void> {
  const counted = new CountingDevice(device);
  let stopRequested!: () => void;
  const stopped = new Promise<string>((resolve) => (stopRequested = () => resolve('control stop')));
  let controlServer: ControlServer | undefined;
  try {
    server.setExports([{ name: options.exportName, device: counted, readOnly: options.readOnly ?? false }]);
    if (control !== undefined) {
      controlServer = await ControlServer.listen(control, device as MdArray, stopRequested, () => counted.counters);
    }
    process.stdout.write(`serving export ${JSON.stringify(options.exportName)} (${device.size} bytes) on ${where} as ${uri(address, options.exportName)}\n`);
  } catch (err) {
    await server.close();
    await device.close();
    throw err;
  }
  const why = await Promise.race([
    stopped,
    new Promise<NodeJS.Signals>((resolve) => {
      process.once('SIGTERM', () => resolve('SIGTERM'));
      process.once('SIGINT', () => resolve('SIGINT'));
    }),
  ]);
  process.stdout.write(`${why}: stopping\n`);
  try {
    await server.close();
    await controlServer?.close();
    if (!device.readOnly) await device.flush().catch((err: unknown) => {
      // A control stop has already stopped the array cleanly; there is nothing left to flush.
      if (why !== 'control stop') throw err;
    });
  } finally {
    await device.close();
  }
  process.stdout.write('stopped cleanly\n');
}

function uri(address: ListenAddress, name: string): string {
  const exportPart = encodeURIComponent(name);
  if ('socket' in address) return `nbd+unix:///${exportPart}?socket=${encodeURI(address.socket)}`;
  const host = address.host.includes(':') ? `[${address.host}]` : address.host;
  return `nbd://${host}:${address.port}/${exportPart}`;
}
