// Where the members of a replicated volume go (issue 19): one copy per node, the creating node
// (the first consumer's) first, the others on the live nodes with the most room, within the
// request's accessibility requirements. Member slot i lives on the node of copy i mod replicas,
// so every copy of a chunk (raid1: the one member of each node; raid10 near layout with one near
// copy per node: slots d..d+replicas-1 mod members) sits on a different node. Pure: the caller
// gathers liveness, room and the allowed nodes (PlacementReports) and picks the disks on its own node.

import { formatBytes } from '../units/byte-sizes.js';
import { CsiError } from './errors.js';
import type { Topology } from './messages.js';
import { allowedBy, topologyKey } from './topology.js';
import type { NodeLiveness } from '../k8s/replication.js';

/** Member file of a slot, the same on every node: `llraid-<id>-<slot>.img` (disk-pool.ts). */
export function memberFileName(volumeId: string, slot: number): string {
  return `llraid-${volumeId}-${slot}.img`;
}

/** What the caller knows of one other node. */
export interface NodeCandidate {
  node: string;
  /** Its llraid Lease is live (NodeLiveness.liveNodes). */
  live: boolean;
  /** Bytes of a volume of this class it reports room for (its share); undefined: no report. */
  room: number | undefined;
}

export interface PlacementRequest {
  volumeId: string;
  members: number;
  replicas: number;
  /** The volume's capacity: a node holds its share of it when it reports at least this room. */
  capacity: number;
  /** This node, which must hold a copy; `localProblem` says why it cannot, when it cannot. */
  localNode: string;
  localProblem?: string;
  /** The other nodes running the plugin. */
  candidates: readonly NodeCandidate[];
  /** CSI accessibility_requirements.requisite: this node must be in one; empty = any node. */
  requisite: readonly Topology[];
  /** The nodes the other copies may go to (allowedNodesFor); undefined: any node. */
  others?: readonly string[];
}

export interface Placement {
  /** Copy k's node: the local node first. */
  nodes: string[];
  /** Slot i → node of copy i mod replicas, and the slot's file name. */
  slots: Array<{ slot: number; node: string; file: string }>;
}

/**
 * Picks `replicas` nodes: the local node, then the live allowed candidates with room for the volume, the most room first (ties by name, so a retry picks the same).
 * Fewer than `replicas` → RESOURCE_EXHAUSTED naming every node considered and why it was left out.
 */
export function placeReplicas(r: PlacementRequest): Placement {
  const localWhy = !allowedBy(r.requisite, r.localNode) ? 'not in the accessibility requirements' : r.localProblem;
  const why = localWhy === undefined ? [] : [`${r.localNode} (this node): ${localWhy}`];
  const fit: Array<{ node: string; room: number }> = [];
  for (const c of r.candidates) {
    if (c.node === r.localNode) continue;
    if (r.others !== undefined && !r.others.includes(c.node)) why.push(`${c.node}: not in the allowed topologies`);
    else if (!c.live) why.push(`${c.node}: its llraid node lease is not live`);
    else if (c.room === undefined) why.push(`${c.node}: reports no capacity for this storage class`);
    else if (c.room < r.capacity) why.push(`${c.node}: room for ${formatBytes(c.room)}, needs ${formatBytes(r.capacity)}`);
    else fit.push({ node: c.node, room: c.room });
  }
  fit.sort((a, b) => b.room - a.room || a.node.localeCompare(b.node));
  if (localWhy !== undefined || fit.length < r.replicas - 1) {
    const usable = (localWhy === undefined ? 1 : 0) + fit.length;
    const considered = r.candidates.filter((c) => c.node !== r.localNode).length + 1;
    throw new CsiError(
      'RESOURCE_EXHAUSTED',
      `CreateVolume: ${r.replicas} replicas need ${r.replicas} nodes with room (this node first), found ${usable} of the ${considered} considered` +
        (why.length > 0 ? `; left out: ${why.join('; ')}` : ''),
    );
  }
  const nodes = [r.localNode, ...fit.slice(0, r.replicas - 1).map((f) => f.node)];
  const slots = Array.from({ length: r.members }, (_, slot) => ({ slot, node: nodes[slot % r.replicas]!, file: memberFileName(r.volumeId, slot) }));
  return { nodes, slots };
}

/** What the cluster says about placing a volume of a claim's StorageClass (k8s/placement-reports.ts). */
export interface PlacementReports {
  forClaim(claim: { namespace: string; name: string } | undefined): Promise<{
    /**
     * Per node, the largest volume of the class it reports room for: the CSIStorageCapacity
     * objects the provisioner publishes from each node's GetCapacity, which for a replicated
     * class answers with the largest volume whose share (members/replicas members) the node's
     * pool holds. Undefined when nothing reports for the class at all (capacity tracking off,
     * no claim): then room does not decide, and a node without space fails when its plugin
     * allocates its member.
     */
    room: Map<string, number> | undefined;
    /** The nodes the class's allowedTopologies allow; undefined: every node. */
    allowedNodes: string[] | undefined;
  }>;
}

/**
 * The nodes the other copies may go to. The class's allowedTopologies when known: a provisioner
 * run with --strict-topology narrows the request's requisite to its own node, so the request
 * need not say where the other copies may go. Without a class, the other nodes the requisite
 * names, if it names any; else every node.
 */
export function allowedNodesFor(fromClass: readonly string[] | undefined, requisite: readonly Topology[], localNode: string): string[] | undefined {
  if (fromClass !== undefined) return [...fromClass];
  if (requisite.some((t) => t.segments?.[topologyKey] === undefined)) return undefined;
  const named = requisite.map((t) => t.segments[topologyKey]!).filter((n) => n !== localNode);
  return named.length > 0 ? [...new Set(named)].sort() : undefined;
}

/**
 * Every node placement considers, each with what is known of it, in name order: the live ones
 * (their Lease), those that report room, and those the allowed list names.
 */
export async function candidateNodes(
  liveness: Pick<NodeLiveness, 'liveNodes'>,
  reports: PlacementReports,
  claim: { namespace: string; name: string } | undefined,
  requisite: readonly Topology[],
  localNode: string,
): Promise<{ candidates: NodeCandidate[]; others: string[] | undefined }> {
  const [live, report] = await Promise.all([liveness.liveNodes(), reports.forClaim(claim)]);
  const others = allowedNodesFor(report.allowedNodes, requisite, localNode);
  const liveSet = new Set(live.map((n) => n.node));
  const names = new Set([...liveSet, ...(report.room?.keys() ?? []), ...(others ?? [])]);
  const candidates = [...names].sort().map((node) => ({
    node, live: liveSet.has(node), room: report.room ? report.room.get(node) : Number.POSITIVE_INFINITY,
  }));
  return { candidates, others };
}
