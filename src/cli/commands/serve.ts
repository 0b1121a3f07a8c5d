// `llraid serve`: opens a file as a BlockDevice and serves it over NBD on a unix socket or TCP
// until SIGTERM/SIGINT, then answers what is in flight, flushes and closes the device.

import type { Command } from 'commander';
import { FileDevice } from '../../block/file-device.js';
import type { BlockDevice } from '../../block/block-device.js';
import { NbdServer, type ListenAddress } from '../../nbd/index.js';
import { UsageError } from '../report-error.js';

interface ServeOptions {
  file?: string;
  socket?: string;
  listen?: string;
  exportName: string;
  readOnly?: boolean;
  direct?: boolean;
  quiet?: boolean;
}

export function register(program: Command): void {
  program
    .command('serve')
    .description('serve a block device over NBD until SIGTERM or SIGINT')
    .option('--file <path>', 'serve this regular file or block device')
    .option('--socket <path>', 'listen on this unix socket (created with mode 0600)')
    .option('--listen <host:port>', 'listen on TCP')
    .option('--export-name <name>', 'name of the export (the empty name also selects it)', '')
    .option('--read-only', 'refuse writes')
    .option('--direct', 'open the file with O_DIRECT')
    .option('--quiet', 'do not log misbehaving clients on stderr')
    .action(async (options: ServeOptions) => {
      const address = parseAddress(options);
      if (!options.file) throw new UsageError('serve needs --file PATH');
      const device = await FileDevice.open(options.file, { readOnly: options.readOnly ?? false, direct: options.direct ?? false });
      await serveUntilSignal(device, address, options);
    });
}

function parseAddress(options: ServeOptions): ListenAddress {
  if ((options.socket === undefined) === (options.listen === undefined)) {
    throw new UsageError('serve needs exactly one of --socket PATH or --listen HOST:PORT');
  }
  if (options.socket !== undefined) return { socket: options.socket };
  const m = /^(.*):(\d+)$/.exec(options.listen!);
  const port = m ? Number(m[2]) : NaN;
  if (!m || port > 65535) throw new UsageError(`--listen expects HOST:PORT, found ${JSON.stringify(options.listen)}`);
  return { host: m[1]!.replace(/^\[(.*)\]$/, '$1') || '0.0.0.0', port };
}

async function serveUntilSignal(device: BlockDevice, address: ListenAddress, options: ServeOptions): Promise<void> {
  const server = new NbdServer({
    exports: [{ name: options.exportName, device, readOnly: options.readOnly ?? false }],
    log: options.quiet ? undefined : (m) => process.stderr.write(`llraid serve: ${m}\n`),
  });
  try {
    const where = await server.listen(address);
    process.stdout.write(`serving export ${JSON.stringify(options.exportName)} (${device.size} bytes) on ${where} as ${uri(address, options.exportName)}\n`);
  } catch (err) {
    await device.close();
    throw err;
  }
  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });
  process.stdout.write(`${signal}: stopping\n`);
  try {
    await server.close();
    if (!device.readOnly) await device.flush();
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
