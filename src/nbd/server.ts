// The NBD server: listens on a unix socket (mode 0600) or on TCP, and runs one NbdConnection per
// client over its exports (a fixed table, or an ExportSource that opens them on demand). On TCP
// a server given TLS credentials requires TLS of every client (NBD_OPT_STARTTLS, TLS 1.3, a
// client certificate signed by its CA) and may listen on any address; without them it listens
// on loopback only (loopback.ts). A unix socket is always plain: its mode is its access control.
// Closing the server stops accepting, lets every connection answer what it has in flight, and
// removes the socket file; the devices stay open for their owner to close.
//
// A server may listen before it has its exports (`setExports` later): an engine claims its
// address first, so a second engine meant for the same socket fails before it opens any member.
// Clients that connect meanwhile wait, unread, until the exports are set.

import { chmodSync, unlinkSync } from 'node:fs';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { claimSocketPath } from '../block/socket-file.js';
import { tlsModule } from '../common/lazy-builtins.js';
import type { SizeClassPool } from '../block/size-class-pool.js';
import { DEFAULT_LIMITS, NbdConnection, checkLimits, payloadPool, type ConnectionLimits, type TlsCredentials } from './connection.js';
import { NbdError } from './errors.js';
import { ExportTable, NbdExport, type ExportOptions, type ExportSource } from './export.js';
import { loopbackAddress } from './loopback.js';

export interface ServerOptions {
  /** The exports (or their source); when absent, setExports() gives them once the server listens. */
  exports?: ExportOptions[] | ExportSource;
  /**
   * Require TLS of every TCP client, with these credentials (PEM text); lets the server listen
   * on any address. Unix socket clients stay plain.
   */
  tls?: TlsCredentials;
  limits?: Partial<ConnectionLimits>;
  /** Where diagnostics about misbehaving clients go (default: the nbd trace, LLRAID_TRACE=nbd). */
  log?: (message: string) => void;
}

export type ListenAddress = { socket: string } | { host: string; port: number };

export class NbdServer {
  /** Undefined until the exports are known; connections accepted before then wait in `held`. */
  private exports: ExportSource | undefined;
  private readonly tls: TlsCredentials | undefined;
  /** Set once listening on TCP: every connection then requires TLS if the server has credentials. */
  private tcp = false;
  private readonly held = new Set<Socket>();
  private readonly limits: ConnectionLimits;
  private readonly log: ((message: string) => void) | undefined;
  private readonly connections = new Set<NbdConnection>();
  /** Every connection's payload buffers (connection.ts, payloadPool). */
  private readonly payloads: SizeClassPool;
  private server: Server | undefined;
  private socketPath: string | undefined;

  constructor(options: ServerOptions) {
    this.limits = { ...DEFAULT_LIMITS, ...options.limits };
    // Checked again against the exports' maximum payload once they are known.
    checkLimits(this.limits, 0);
    this.payloads = payloadPool(this.limits);
    this.log = options.log;
    if (options.tls !== undefined) {
      try {
        tlsModule().createSecureContext({ ...options.tls, minVersion: 'TLSv1.3' });
      } catch (err) {
        throw new NbdError('NBD_LISTEN', `unusable TLS credentials: ${(err as Error).message}`, { cause: err });
      }
      this.tls = options.tls;
    }
    if (options.exports !== undefined) this.setExports(options.exports);
  }

  /** Sets the exports of a server made without them, and starts the connections that waited. */
  setExports(exports: ExportOptions[] | ExportSource): void {
    if (this.exports !== undefined) throw new NbdError('NBD_EXPORT', 'the server already has its exports');
    let source: ExportSource;
    if (Array.isArray(exports)) {
      if (exports.length === 0) throw new NbdError('NBD_EXPORT', 'a server needs at least one export, found none');
      source = new ExportTable(exports.map((o) => new NbdExport(o)));
    } else source = exports;
    checkLimits(this.limits, source.maxPayload);
    this.exports = source;
    const waiting = [...this.held];
    this.held.clear();
    for (const socket of waiting) {
      socket.removeAllListeners('error');
      socket.removeAllListeners('close');
      this.accept(socket);
      socket.resume();
    }
  }

  /** Starts listening; resolves with a printable address (`unix:PATH` or `HOST:PORT`). */
  async listen(address: ListenAddress): Promise<string> {
    if (this.server) throw new NbdError('NBD_LISTEN', 'server is already listening');
    const server = createServer({ noDelay: true, pauseOnConnect: true }, (socket) => this.accept(socket));
    this.server = server;
    try {
      if ('socket' in address) {
        // A stale socket (a server that died) is replaced; anything else at the path is refused.
        await claimSocketPath(address.socket, 'NBD socket');
        // The socket file is created by bind(2) inside listen(); a umask of 077 for that one
        // synchronous call makes it 0600 from the start instead of chmod-ing it afterwards.
        const old = process.umask(0o177);
        try {
          await new Promise<void>((resolve, reject) => {
            server.once('error', reject);
            server.listen(address.socket, () => {
              server.off('error', reject);
              resolve();
            });
            process.umask(old);
          });
        } finally {
          process.umask(old);
        }
        chmodSync(address.socket, 0o600);
        this.socketPath = address.socket;
        return `unix:${address.socket}`;
      }
      // Plain NBD carries no authentication: without TLS, loopback only.
      const host = this.tls === undefined ? await loopbackAddress(address.host) : address.host;
      this.tcp = true;
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(address.port, host, () => {
          server.off('error', reject);
          resolve();
        });
      });
      const a = server.address() as AddressInfo;
      return `${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`;
    } catch (err) {
      this.server = undefined;
      throw new NbdError('NBD_LISTEN', `cannot listen on ${describe(address)}: ${(err as Error).message}`, { cause: err });
    }
  }

  /** The TCP port, once listening on TCP. */
  get port(): number | undefined {
    const a = this.server?.address();
    return a && typeof a === 'object' ? a.port : undefined;
  }

  get connectionCount(): number {
    return this.connections.size;
  }

  /** Stops accepting, finishes in-flight requests on every connection, closes them. */
  async close(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    for (const socket of this.held) socket.destroy();
    this.held.clear();
    const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
    await Promise.all([...this.connections].map((c) => c.shutdown()));
    await stopped;
    if (this.socketPath) {
      try {
        unlinkSync(this.socketPath);
      } catch {
        // already gone: nothing to clean up
      }
      this.socketPath = undefined;
    }
  }

  private accept(socket: Socket): void {
    if (this.exports === undefined) {
      socket.pause();
      this.held.add(socket);
      socket.once('close', () => this.held.delete(socket));
      socket.once('error', () => socket.destroy());
      return;
    }
    const c = new NbdConnection(socket, this.exports, this.limits, this.log, this.tcp ? this.tls : undefined, this.payloads);
    this.connections.add(c);
    void c.settled.then(() => this.connections.delete(c));
    void c.run();
  }
}

function describe(address: ListenAddress): string {
  return 'socket' in address ? `unix:${address.socket}` : `${address.host}:${address.port}`;
}
