// NBD URIs as libnbd reads them (doc/uri.md of NetworkBlockDevice/nbd): the address of an export
// the client attaches. A remote member is `nbds://HOST:PORT/UUID` (TLS over TCP) or
// `nbd+unix:///UUID?socket=PATH` (a plain unix socket); `nbd://` and `nbds+unix://` complete the set.
// Of libnbd's query parameters this client reads `socket` and `tls-hostname` (libnbd ≥ 1.22,
// nbd_set_tls_hostname): the name the server's certificate must carry, instead of the URI's host.
// Engines reach member services by node IP, and one certificate named `llraid-member` serves
// every node, so the IP is where to connect and the name is what to verify.

import { isIP } from 'node:net';
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
  /**
   * `?tls-hostname=NAME`: the server's certificate is verified against NAME (and NAME is sent as
   * SNI) instead of the URI's host. Only with `tls`.
   */
  tlsHostname?: string;
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
  const tlsHostname = takeTlsHostname(uri, query, scheme.tls);
  const tls = { tls: scheme.tls, ...(tlsHostname === undefined ? {} : { tlsHostname }) };
  if (scheme.unix) {
    if (url.host !== '') throw bad(uri, `a unix socket URI has no host, found ${url.host}`);
    const path = query.get('socket');
    if (path === undefined || path === '') throw bad(uri, 'expected ?socket=PATH');
    query.delete('socket');
    checkNoQuery(uri, query);
    return { uri, address: { transport: 'unix', path }, exportName, ...tls };
  }
  checkNoQuery(uri, query);
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  if (host === '') throw bad(uri, 'expected a host');
  const port = url.port === '' ? NBD_DEFAULT_PORT : Number(url.port);
  return { uri, address: { transport: 'tcp', host, port }, exportName, ...tls };
}

/** A DNS name (labels of letters, digits and hyphens) or an IP address: what a certificate can name. */
const CERTIFICATE_NAME = /^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/i;

/** Takes `tls-hostname` out of `query`: the name to verify, checked; refused on a plain URI. */
function takeTlsHostname(uri: string, query: Map<string, string>, tls: boolean): string | undefined {
  const name = query.get('tls-hostname');
  if (name === undefined) return undefined;
  query.delete('tls-hostname');
  // A parameter that would change nothing is a mistake worth saying: a plain URI checks no certificate.
  if (!tls) throw bad(uri, 'tls-hostname is for nbds:// and nbds+unix:// URIs (a plain connection has no certificate to verify)');
  if (!CERTIFICATE_NAME.test(name) && isIP(name) === 0) throw bad(uri, `tls-hostname: expected a host name or an IP address, found ${JSON.stringify(name)}`);
  return name;
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
