// `llraid serve`: runs a volume engine (src/engine/volume-engine.ts) from the command line: an
// array assembled from its members, or one file, served over NBD on a unix socket or on loopback
// TCP until SIGTERM/SIGINT (or a `stop` on its control socket). What happens is printed as text
// and, with --events PATH, appended to PATH as JSON lines (src/engine/events.ts).

import type { Command } from 'commander';
import { DEFAULT_TUNING } from '../../md/index.js';
import { isNbdError, loopbackAddress, type ListenAddress } from '../../nbd/index.js';
import { fanOut, jsonFileSink, textSink } from '../../engine/events.js';
import { runEngine, type EngineSource } from '../../engine/volume-engine.js';
import { MAX_LEASE_MS } from '../../engine/lease-gate.js';
import { UsageError } from '../report-error.js';
import { addRemoteOptions, memberOpener, type RemoteOptions } from '../remote-options.js';

interface ServeOptions extends RemoteOptions {
  file?: string;
  socket?: string;
  listen?: string;
  exportName: string;
  readOnly?: boolean;
  direct?: boolean;
  force?: boolean;
  quiet?: boolean;
  control?: string;
  events?: string;
  syncSpeedMin?: string;
  syncSpeedMax?: string;
  bitmapDaemonSleep?: string;
  returnInterval?: string;
  leaseMs?: string;
}

export function register(program: Command): void {
  addRemoteOptions(program
    .command('serve'))
    .description('assemble an array from its members (or open a file) and serve it over NBD until SIGTERM or SIGINT')
    .argument('[members...]', 'member files or devices of the array to assemble and serve')
    .option('--file <path>', 'serve this regular file or block device instead of an array')
    .option('--socket <path>', 'listen on this unix socket (created with mode 0600; a stale socket there is replaced, anything else refused)')
    .option('--listen <host:port>', 'listen on TCP on a loopback address (127.0.0.0/8, ::1); others are refused: plain NBD has no authentication (llraid member-serve serves members over TLS)')
    .option('--export-name <name>', 'name of the export (the empty name also selects it)', '')
    .option('--read-only', 'refuse writes')
    .option('--direct', 'open the file with O_DIRECT')
    .option('--force', 'assemble even if members are missing or stale (runs degraded); a remote member that does not answer is watched and re-added when it does')
    .option('--quiet', 'do not log misbehaving clients on stderr (LLRAID_TRACE=nbd still traces them)')
    .option('--control <path>', 'also take control commands (llraid status/grow/... --control PATH) on this unix socket (as --socket: mode 0600, only a stale socket replaced)')
    .option('--sync-speed-min <KiB/s>', `resync speed kept under application I/O (md sync_speed_min, default ${DEFAULT_TUNING.syncSpeedMinKiB})`)
    .option('--sync-speed-max <KiB/s>', `resync speed ceiling (md sync_speed_max, default ${DEFAULT_TUNING.syncSpeedMaxKiB})`)
    .option('--bitmap-daemon-sleep <seconds>', 'llbitmap daemon period for this run (default: what the bitmap holds)')
    .option('--return-interval <seconds>', `how often a remote member that dropped out (or did not answer at start) is tried again, to re-add it (default ${DEFAULT_TUNING.returnIntervalMs / 1000})`)
    .option('--lease-ms <ms>', 'acknowledge writes only under a lease: for MS from the start, then as far as each `llraid lease --control` (control request lease) extends it; past it writes are held, not failed, until it is extended (needs --control)')
    .option('--events <path>', 'also append what happens (assembled, serving, sync ended, stopping, stopped) to PATH as JSON lines')
    .action(async (members: string[], options: ServeOptions) => {
      // Before anything is opened or assembled: a refused address must change nothing.
      const address = await listenAddress(options);
      if ((members.length > 0) === (options.file !== undefined)) {
        throw new UsageError('serve needs either member paths of an array or --file PATH, not both and not neither');
      }
      if (options.file !== undefined && options.control !== undefined) {
        throw new UsageError('--control takes commands for an array; --file serves a plain file');
      }
      if (options.leaseMs !== undefined && options.control === undefined) {
        throw new UsageError('--lease-ms needs --control: the lease is extended by control requests');
      }
      const leaseMs = options.leaseMs === undefined ? undefined : milliseconds(options.leaseMs, '--lease-ms');
      const tuning = {
        ...(options.syncSpeedMin === undefined ? {} : { syncSpeedMin: whole(options.syncSpeedMin, '--sync-speed-min') }),
        ...(options.syncSpeedMax === undefined ? {} : { syncSpeedMax: whole(options.syncSpeedMax, '--sync-speed-max') }),
        ...(options.returnInterval === undefined ? {} : { returnIntervalMs: seconds(options.returnInterval, '--return-interval') }),
      };
      const daemonSleep = options.bitmapDaemonSleep === undefined ? undefined : whole(options.bitmapDaemonSleep, '--bitmap-daemon-sleep');
      const source: EngineSource = options.file !== undefined
        ? { kind: 'file', path: options.file, direct: options.direct ?? false }
        : { kind: 'array', members, force: options.force ?? false, tuning, ...(daemonSleep === undefined ? {} : { daemonSleep }) };
      const stop = new Promise<string>((resolve) => {
        process.once('SIGTERM', () => resolve('SIGTERM'));
        process.once('SIGINT', () => resolve('SIGINT'));
      });
      const opener = memberOpener(members, options);
      await runEngine({
        source,
        ...(opener !== undefined && { opener }),
        address,
        exportName: options.exportName,
        readOnly: options.readOnly ?? false,
        ...(options.control === undefined ? {} : { control: options.control }),
        ...(leaseMs === undefined ? {} : { leaseMs }),
        events: options.events === undefined ? textSink() : fanOut(textSink(), jsonFileSink(options.events)),
        ...(options.quiet ? {} : { log: (m: string) => void process.stderr.write(`llraid serve: ${m}\n`) }),
      }, stop);
    });
}

function whole(text: string, what: string): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(n) || n < 1) throw new UsageError(`${what}: expected a whole number ≥ 1, found ${JSON.stringify(text)}`);
  return n;
}

function milliseconds(text: string, what: string): number {
  const ms = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(ms) || ms > MAX_LEASE_MS) throw new UsageError(`${what}: expected whole milliseconds from 0 to ${MAX_LEASE_MS}, found ${JSON.stringify(text)}`);
  return ms;
}

function seconds(text: string, what: string): number {
  const s = Number(text);
  if (!/^\d+(\.\d+)?$/.test(text) || !(s >= 0.05) || s > 3600) throw new UsageError(`${what}: expected seconds from 0.05 to 3600, found ${JSON.stringify(text)}`);
  return Math.round(s * 1000);
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
