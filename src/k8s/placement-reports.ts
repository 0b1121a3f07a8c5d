// What the cluster says about where a claim's volume may go, for CreateVolume of a replicated
// volume (never at rest): the room each node reports for a volume of the claim's StorageClass —
// the CSIStorageCapacity objects the external-provisioner publishes in the driver's namespace
// (--enable-capacity, one per class and node with --node-deployment), each from that node
// plugin's GetCapacity — and the nodes the class's allowedTopologies allow. The request's own
// accessibility requirements need not say the latter: a provisioner run with --strict-topology
// narrows them to its own node. Three calls per create: the claim, its class, the capacities.

import { CoreV1Api, type KubeConfig, StorageV1Api, type V1TopologySelectorTerm } from '@kubernetes/client-node';
import { callApi, hasStatus, loadKubeConfig } from './api-call.js';

/** Bytes of a Kubernetes quantity ("10Gi", "1500M", "12345", "1e9"); undefined when it is not one. */
export function quantityBytes(q: string | undefined): number | undefined {
  if (q === undefined) return undefined;
  const m = /^([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E|m|[eE][+-]?[0-9]+)?$/.exec(q.trim());
  if (!m) return undefined;
  const n = Number(m[1]);
  const suffix = m[2] ?? '';
  const binary: Record<string, number> = { Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50, Ei: 2 ** 60 };
  const decimal: Record<string, number> = { k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18, m: 1e-3, '': 1 };
  const factor = binary[suffix] ?? decimal[suffix] ?? 10 ** Number(suffix.slice(1));
  return Math.floor(n * factor);
}

export interface PlacementReportsOptions {
  /** The driver's namespace, where the provisioner publishes the capacity objects. */
  namespace: string;
  /** The topology key whose value names a node (capacity objects' nodeTopology, allowedTopologies). */
  topologyKey: string;
  timeoutMs?: number;
}

export interface PlacementReport {
  /**
   * Per node, the largest volume of the class it reports room for (maximum volume size, else
   * capacity); undefined when nothing reports for the class (capacity tracking off).
   */
  room: Map<string, number> | undefined;
  /** The nodes the class's allowedTopologies allow; undefined: no restriction on nodes. */
  allowedNodes: string[] | undefined;
}

/**
 * The nodes a class's allowedTopologies allow, by `key`: a term with no expression on `key`
 * allows every node (undefined), as does a class with no allowedTopologies.
 */
export function allowedNodesOf(terms: readonly V1TopologySelectorTerm[] | undefined, key: string): string[] | undefined {
  if (!terms || terms.length === 0) return undefined;
  const nodes = new Set<string>();
  for (const term of terms) {
    const on = (term.matchLabelExpressions ?? []).filter((e) => e.key === key);
    if (on.length === 0) return undefined;
    // Expressions of one term are ANDed: a node must be in every one of them.
    const [first, ...rest] = on.map((e) => new Set(e.values ?? []));
    for (const n of first ?? []) if (rest.every((r) => r.has(n))) nodes.add(n);
  }
  return [...nodes].sort();
}

export class KubePlacementReports {
  private readonly core: CoreV1Api;
  private readonly storage: StorageV1Api;

  constructor(kubeconfig: string | KubeConfig | undefined, private readonly o: PlacementReportsOptions) {
    const kc = loadKubeConfig(kubeconfig);
    this.core = kc.makeApiClient(CoreV1Api);
    this.storage = kc.makeApiClient(StorageV1Api);
  }

  /** What is known for the claim's class; nothing (no restriction, no room report) without a claim or a class. */
  async forClaim(claim: { namespace: string; name: string } | undefined): Promise<PlacementReport> {
    const none: PlacementReport = { room: undefined, allowedNodes: undefined };
    if (!claim) return none;
    const timeout = this.o.timeoutMs ?? 10_000;
    let className: string | undefined;
    try {
      const pvc = await callApi(`get pvc ${claim.namespace}/${claim.name}`, timeout, () =>
        this.core.readNamespacedPersistentVolumeClaim({ name: claim.name, namespace: claim.namespace }));
      className = pvc.spec?.storageClassName ?? undefined;
    } catch (err) {
      if (hasStatus(err, 404)) return none;
      throw err;
    }
    if (!className) return none;
    const name = className;
    const [sc, list] = await Promise.all([
      callApi(`get storageclass ${name}`, timeout, () => this.storage.readStorageClass({ name })),
      callApi(`list csistoragecapacities in ${this.o.namespace}`, timeout, () => this.storage.listNamespacedCSIStorageCapacity({ namespace: this.o.namespace })),
    ]);
    const room = new Map<string, number>();
    let any = false;
    for (const c of list.items) {
      if (c.storageClassName !== name) continue;
      any = true;
      const node = c.nodeTopology?.matchLabels?.[this.o.topologyKey];
      const bytes = quantityBytes(c.maximumVolumeSize ?? c.capacity);
      if (node !== undefined && bytes !== undefined) room.set(node, Math.max(bytes, room.get(node) ?? 0));
    }
    return { room: any ? room : undefined, allowedNodes: allowedNodesOf(sc.allowedTopologies, this.o.topologyKey) };
  }
}
