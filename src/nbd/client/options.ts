// What a caller gives the NBD client: where the export is, the TLS material of an `nbds` URI, the
// attach epoch of a member, and the deadlines. Defaults are applied here, once.

import { readFileSync } from 'node:fs';
import { NbdError } from '../errors.js';
import { parseNbdUri, type NbdTarget } from './uri.js';

/** Each field a file path or the PEM text itself (anything containing "-----BEGIN"). */
export interface TlsFiles {
  /** This client's certificate (chain), signed by a CA the server trusts. */
  cert: string;
  key: string;
  /** The CA(s) the server's certificate must chain to. */
  ca: string;
}

export interface NbdClientOptions {
  /** An NBD URI (uri.ts): `nbds://HOST:PORT/EXPORT`, `nbd+unix:///EXPORT?socket=PATH`, ... */
  uri: string;
  /** Needed by `nbds` URIs (TLS 1.3, mutual certificates); unused by plain ones. */
  tls?: TlsFiles;
  /**
   * The attach epoch (issue 13 plan, 3): presented as the meta context `llraid:epoch=<n>`; a server
   * that does not accept it is not an llraid member service and the connect fails.
   */
  epoch?: bigint;
  /** A request not answered within this fails the device (ETIMEDOUT). Default 30 s. */
  timeoutMs?: number;
  /** Connecting, TLS and negotiation together must end within this. Default 10 s. */
  connectTimeoutMs?: number;
}

export const DEFAULT_TIMEOUT_MS = 30_000;
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;

/** PEM contents of the TLS files, read once at connect. */
export interface TlsMaterial {
  cert: string;
  key: string;
  ca: string;
}

export interface ResolvedOptions {
  target: NbdTarget;
  tls: TlsMaterial | undefined;
  epoch: bigint | undefined;
  timeoutMs: number;
  connectTimeoutMs: number;
}

const U64_MAX = (1n << 64n) - 1n;

/** Checks and completes `options`; throws NBD_URI, NBD_TLS or NBD_LIMITS naming the URI. */
export function resolveOptions(options: NbdClientOptions): ResolvedOptions {
  const target = parseNbdUri(options.uri);
  const ms = (name: string, value: number | undefined, fallback: number): number => {
    if (value === undefined) return fallback;
    if (!Number.isSafeInteger(value) || value <= 0) {
      throw new NbdError('NBD_LIMITS', `${options.uri}: ${name} must be a positive whole number of milliseconds, found ${value}`);
    }
    return value;
  };
  if (options.epoch !== undefined && (options.epoch < 0n || options.epoch > U64_MAX)) {
    throw new NbdError('NBD_LIMITS', `${options.uri}: an epoch is an unsigned 64-bit number, found ${options.epoch}`);
  }
  let tls: TlsMaterial | undefined;
  if (target.tls) {
    if (options.tls === undefined) {
      throw new NbdError('NBD_TLS', `${options.uri}: an nbds URI needs a client certificate, its key and the CA (--tls-cert, --tls-key, --tls-ca)`);
    }
    tls = { cert: pem(options.uri, 'certificate', options.tls.cert), key: pem(options.uri, 'key', options.tls.key), ca: pem(options.uri, 'CA', options.tls.ca) };
  }
  return {
    target,
    tls,
    epoch: options.epoch,
    timeoutMs: ms('timeoutMs', options.timeoutMs, DEFAULT_TIMEOUT_MS),
    connectTimeoutMs: ms('connectTimeoutMs', options.connectTimeoutMs, DEFAULT_CONNECT_TIMEOUT_MS),
  };
}

function pem(uri: string, what: string, value: string): string {
  if (value.includes('-----BEGIN')) return value;
  try {
    return readFileSync(value, 'utf8');
  } catch (err) {
    throw new NbdError('NBD_TLS', `${uri}: cannot read the TLS ${what} ${value}: ${(err as Error).message}`, { cause: err });
  }
}
