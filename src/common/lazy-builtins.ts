// Node builtins that only some processes use, loaded on first use rather than at import. An
// engine (`llraid serve`, one per staged volume) with local members and no TLS never needs TLS,
// name lookups or random bytes, yet importing node:tls loads node:crypto with it and, through
// ESM's view of the module, reads tls.rootCertificates (every bundled CA parsed, in each
// engine): 3.5 MiB of RSS before any request, measured in an empty node. require() returns
// the module as CommonJS sees it, whose lazy properties stay lazy.
//
// Type-only imports of these modules stay free (they are erased): only values go through here.

import { createRequire } from 'node:module';

const requireBuiltin = createRequire(import.meta.url);

/** node:tls, loaded on the first call (a TLS member link or an NBD server with TLS). */
export function tlsModule(): typeof import('node:tls') {
  return requireBuiltin('node:tls') as typeof import('node:tls');
}

/** node:crypto, loaded on the first call. */
export function cryptoModule(): typeof import('node:crypto') {
  return requireBuiltin('node:crypto') as typeof import('node:crypto');
}

/** node:dns/promises, loaded on the first call (a host name to look up). */
export function dnsModule(): typeof import('node:dns/promises') {
  return requireBuiltin('node:dns/promises') as typeof import('node:dns/promises');
}

/** `n` random bytes from node:crypto (UUIDs of arrays and members). */
export function randomBytes(n: number): Buffer {
  return cryptoModule().randomBytes(n);
}
