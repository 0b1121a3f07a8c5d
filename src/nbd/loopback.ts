// Where an NBD server without TLS may listen on TCP: loopback only (127.0.0.0/8, ::1, or a name
// that resolves to nothing else). Plain NBD carries no authentication, so anyone who can reach a
// TCP port it serves on can read and write the export; a server given TLS credentials (the
// member service) may listen anywhere.

import { BlockList, isIP } from 'node:net';
import { dnsModule } from '../common/lazy-builtins.js';
import { NbdError } from './errors.js';

const LOOPBACK = new BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
// IPv4-mapped addresses (::ffff:127.0.0.1) are checked against the IPv4 rule by BlockList.
LOOPBACK.addAddress('::1', 'ipv6');

const EXPECTED = 'expected a loopback address (127.0.0.0/8, ::1, or a name that resolves only to them)';
const WHY = 'plain NBD over TCP has no TLS or authentication, so anyone who can reach the port could read and write the export';

/** True for a numeric IPv4 or IPv6 address on the loopback interface. */
export function isLoopback(address: string): boolean {
  const family = isIP(address);
  return family !== 0 && LOOPBACK.check(address, family === 4 ? 'ipv4' : 'ipv6');
}

/**
 * The address to bind for `host`: `host` itself when it is a loopback address, or the first
 * address of a name all of whose addresses are loopback (bound as resolved, so the name cannot
 * resolve elsewhere between this check and bind). Throws NBD_LISTEN for anything else.
 */
export async function loopbackAddress(host: string): Promise<string> {
  if (host === '') throw refuse('an empty host (every address)');
  if (isIP(host) !== 0) {
    if (!isLoopback(host)) throw refuse(JSON.stringify(host));
    return host;
  }
  let found: Array<{ address: string }>;
  try {
    found = await dnsModule().lookup(host, { all: true, verbatim: true });
  } catch (err) {
    throw new NbdError('NBD_LISTEN', `${EXPECTED}, found ${JSON.stringify(host)}, which does not resolve: ${(err as Error).message}`, { cause: err });
  }
  const other = found.filter((a) => !isLoopback(a.address)).map((a) => a.address);
  if (found.length === 0 || other.length > 0) throw refuse(`${JSON.stringify(host)}, which resolves to ${other.join(', ') || 'nothing'}`);
  return found[0]!.address;
}

function refuse(what: string): NbdError {
  return new NbdError('NBD_LISTEN', `${EXPECTED}, found ${what}: ${WHY}`);
}
