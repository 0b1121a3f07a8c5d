// The client's byte streams: a unix or TCP socket to the server, upgraded in place to TLS 1.3
// with mutual certificates after NBD_OPT_STARTTLS (proto.md, "TLS support"). Failures here name
// the address and become NBD_CONNECT or NBD_TLS; what flows over the stream is not its business.

import { connect as netConnect, type Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { isIP } from 'node:net';
import { tlsModule } from '../../common/lazy-builtins.js';
import { NbdError } from '../errors.js';
import type { TlsMaterial } from './options.js';
import { describeAddress, type NbdTarget } from './uri.js';

/** Bytes a plain socket reads at once into its one reused buffer (see PlainReads). */
const READ_BUFFER = 1024 * 1024;

/**
 * Where a plain socket's bytes go. It reads into one reused buffer (net's `onread`) instead of a
 * fresh 64 KiB buffer per read, which halved the client's sequential read rate: `sink` gets a
 * view valid only during the call, and must copy what it keeps. A TLS socket emits 'data'.
 */
export interface PlainReads {
  sink: (chunk: Buffer) => void;
}

/**
 * Resolves with a connected socket (and, unless TLS will run over it, its PlainReads); rejects
 * with NBD_CONNECT naming the URI and the address.
 */
export function openSocket(target: NbdTarget, timeoutMs: number): Promise<{ socket: Socket; reads: PlainReads | undefined }> {
  const where = `${target.uri} (${describeAddress(target.address)})`;
  return new Promise((resolve, reject) => {
    const a = target.address;
    const reads: PlainReads | undefined = target.tls ? undefined : { sink: () => undefined };
    const onread = reads === undefined ? undefined : {
      buffer: Buffer.allocUnsafe(READ_BUFFER),
      callback: (n: number, buf: Uint8Array): boolean => {
        reads.sink((buf as Buffer).subarray(0, n));
        return true;
      },
    };
    const socket = a.transport === 'unix'
      ? netConnect({ path: a.path, ...(onread ? { onread } : {}) })
      : netConnect({ host: a.host, port: a.port, noDelay: true, ...(onread ? { onread } : {}) });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new NbdError('NBD_CONNECT', `cannot connect to ${where}: no answer within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      socket.destroy();
      reject(new NbdError('NBD_CONNECT', `cannot connect to ${where}: ${connectReason(err)}`, { cause: err }));
    });
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      socket.setNoDelay(true);
      // A peer that vanishes without a reset (a cut link) is found by the request deadline when
      // requests are in flight, and by keepalive probes when none are.
      socket.setKeepAlive(true, 10_000);
      resolve({ socket, reads });
    });
  });
}

/**
 * Runs the TLS handshake over `socket` (just after the server acknowledged STARTTLS): TLS 1.3
 * only, this client's certificate presented, the server's verified against the CA and the name
 * expected of it: the URI's `tls-hostname` if it has one, else its host. Rejects with NBD_TLS.
 */
export function startTls(socket: Socket, target: NbdTarget, material: TlsMaterial): Promise<TLSSocket> {
  const name = expectedName(target);
  return new Promise((resolve, reject) => {
    const { checkServerIdentity, connect } = tlsModule();
    const tls = connect({
      socket,
      host: name,
      // SNI may not carry an IP address (RFC 6066); the certificate check still uses `name`.
      ...(isIP(name) === 0 ? { servername: name } : {}),
      // Said outright rather than left to `host`: the name checked is the one expected, never the
      // address connected to when the URI names another.
      checkServerIdentity: (_host, cert) => {
        const err = checkServerIdentity(name, cert);
        // Node lists only the names of the kind checked (IPs for an IP): say every one it carries.
        if (err !== undefined) err.message += `; the certificate carries ${cert.subjectaltname ?? 'no subjectAltName'}`;
        return err;
      },
      minVersion: 'TLSv1.3',
      cert: material.cert,
      key: material.key,
      ca: material.ca,
      rejectUnauthorized: true,
    });
    tls.once('error', (err) => {
      tls.destroy();
      reject(tlsError(target, err));
    });
    tls.once('secureConnect', () => {
      tls.removeAllListeners('error');
      resolve(tls);
    });
  });
}

/** The name the server's certificate must carry. */
function expectedName(target: NbdTarget): string {
  if (target.tlsHostname !== undefined) return target.tlsHostname;
  return target.address.transport === 'tcp' ? target.address.host : 'localhost';
}

/**
 * NBD_TLS for a failure of the TLS layer (an alert, a certificate refused either way). A
 * certificate that does not name what was expected says which name was checked, and how to
 * check another.
 */
export function tlsError(target: NbdTarget, err: Error): NbdError {
  const mismatch = (err as NodeJS.ErrnoException).code === 'ERR_TLS_CERT_ALTNAME_INVALID';
  const hint = !mismatch ? ''
    : target.tlsHostname !== undefined ? ` (checked against tls-hostname ${target.tlsHostname})`
    : ` (checked against the URI's host ${expectedName(target)}; add ?tls-hostname=NAME to check the name the certificate carries)`;
  return new NbdError('NBD_TLS', `TLS with ${target.uri} failed: ${err.message}${hint}`, { cause: err });
}

/** Whether `err` came from the TLS layer rather than the socket under it. */
export function isTlsFailure(err: unknown): boolean {
  const e = err as { code?: unknown; library?: unknown };
  return (typeof e?.code === 'string' && (e.code.startsWith('ERR_SSL') || e.code.startsWith('ERR_TLS'))) || e?.library === 'SSL routines';
}

function connectReason(err: NodeJS.ErrnoException): string {
  switch (err.code) {
    case 'ECONNREFUSED':
      return 'connection refused (nothing listens there)';
    case 'ENOENT':
      return 'no such socket';
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return `unreachable (${err.code})`;
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return `the host name does not resolve (${err.code})`;
    default:
      return err.message;
  }
}
