// The attach epoch on the wire: the NBD meta context `llraid:epoch=<decimal u64>` a client
// selects for a member (NBD_OPT_SET_META_CONTEXT) before NBD_OPT_GO. A member service answers it
// with NBD_REP_META_CONTEXT; a server that is not one (nbdkit, qemu-nbd) does not.

import { parseEpoch } from './epoch-store.js';

export const EPOCH_CONTEXT_PREFIX = 'llraid:epoch=';

/** The epoch a meta context query carries, or undefined when it is not an epoch context. */
export function parseEpochContext(query: string): bigint | undefined {
  if (!query.startsWith(EPOCH_CONTEXT_PREFIX)) return undefined;
  return parseEpoch(query.slice(EPOCH_CONTEXT_PREFIX.length));
}

export function epochContext(epoch: bigint): string {
  return `${EPOCH_CONTEXT_PREFIX}${epoch}`;
}
