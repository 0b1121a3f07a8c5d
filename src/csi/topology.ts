// The one topology segment llraid publishes (NodeGetInfo) and reads back (CreateVolume's
// accessibility requirements, GetCapacity): the node, under topology.llraid.io/node.

import type { Topology } from './messages.js';

export const topologyKey = 'topology.llraid.io/node';

export function nodeTopology(node: string): Topology {
  return { segments: { [topologyKey]: node } };
}

/** Whether `node` is allowed by `requisite` (a topology without our key allows every node; none: any). */
export function allowedBy(requisite: readonly Topology[], node: string): boolean {
  if (requisite.length === 0) return true;
  return requisite.some((t) => {
    const v = t.segments?.[topologyKey];
    return v === undefined || v === node;
  });
}
