// NBD URIs as libnbd reads them (doc/uri.md of NetworkBlockDevice/nbd): the address of an export
// the client attaches. A remote member is `nbds://HOST:PORT/UUID` (TLS over TCP) or
// `nbd+unix:///UUID?socket=PATH` (a plain unix socket); `nbd://` and `nbds+unix://` complete the set.

import { NbdError } from '../errors.js';

/** The IANA port of NBD, used when a TCP URI names none. */
export const NBD_DEFAULT_PORT = 10809;

export type NbdAddress = { transport: 'tcp'; host: string; port: number } | { transport: 'unix'; path: string };

export interface NbdTarget {
  /** The URI as given: every message about this export names it. */
  uri: string;
  address: NbdAddress;
  exportName: string;
  /** NBD_OPT_STARTTLS before anything else, and never go on in plain (`nbds`). */
  tls: boolean;
}

const SCHEMES: Record<string, { tls: boolean; unix: boolean }> = {
  'nbd:': { tls: false, unix: false },
  'nbds:': { tls: true, unix: false },
  'nbd+unix:': { tls: false, unix: true },
  'nbds+unix:': { tls: true, unix: true },
};

/** Parses an NBD URI; throws NBD_URI naming what is wrong with it. */
export function parseNbdUri(uri: string): NbdTarget {
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    throw bad(uri, 'expected nbds://HOST:PORT/EXPORT or nbd+unix:///EXPORT?socket=PATH');
  }
  const scheme = SCHEMES[url.protocol];
  if (scheme === undefined) throw bad(uri, `expected the scheme nbd, nbds, nbd+unix or nbds+unix, found ${url.protocol.slice(0, -1)}`);
  if (url.username !== '' || url.password !== '') throw bad(uri, 'user names and passwords are not supported');
  let exportName: string;
  try {
    // The path is "/" followed by the export name, percent-encoded ("/" alone: the default export).
    exportName = decodeURIComponent(url.pathname.replace(/^\//, ''));
  } catch {
    throw bad(uri, 'the export name is not valid percent-encoding');
  }
  const query = new Map(url.searchParams);
  if (scheme.unix) {
    if (url.host !== '') throw bad(uri, `a unix socket URI has no host, found ${url.host}`);
    const path = query.get('socket');
    if (path === undefined || path === '') throw bad(uri, 'expected ?socket=PATH');
    query.delete('socket');
    checkNoQuery(uri, query);
    return { uri, address: { transport: 'unix', path }, exportName, tls: scheme.tls };
  }
  checkNoQuery(uri, query);
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  if (host === '') throw bad(uri, 'expected a host');
  const port = url.port === '' ? NBD_DEFAULT_PORT : Number(url.port);
  return { uri, address: { transport: 'tcp', host, port }, exportName, tls: scheme.tls };
}

/** `host:port` or `unix:PATH`, for messages about the connection itself. */
export function describeAddress(address: NbdAddress): string {
  if (address.transport === 'unix') return `unix:${address.path}`;
  return address.host.includes(':') ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`;
}

function checkNoQuery(uri: string, query: Map<string, string>): void {
  const left = [...query.keys()];
  if (left.length > 0) throw bad(uri, `unknown query parameter ${left.join(', ')}`);
}

function bad(uri: string, why: string): NbdError {
  return new NbdError('NBD_URI', `${JSON.stringify(uri)} is not an NBD URI this client reads: ${why}`);
}
