// How much room each node reports for a volume of a storage class: the CSIStorageCapacity objects
// the external-provisioner publishes in the driver's namespace (--enable-capacity, one per class
// and node with --node-deployment), each from that node plugin's GetCapacity. Read by CreateVolume
// of a replicated volume to place its copies (two calls per create: the claim, for its class, and
// the list), never at rest.

import { CoreV1Api, type KubeConfig, StorageV1Api } from '@kubernetes/client-node';
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

export interface StorageCapacityOptions {
  /** The driver's namespace, where the provisioner publishes the objects. */
  namespace: string;
  /** The topology key whose value in an object's nodeTopology names the node. */
  topologyKey: string;
  timeoutMs?: number;
}

export class KubeStorageCapacity {
  private readonly core: CoreV1Api;
  private readonly storage: StorageV1Api;

  constructor(kubeconfig: string | KubeConfig | undefined, private readonly o: StorageCapacityOptions) {
    const kc = loadKubeConfig(kubeconfig);
    this.core = kc.makeApiClient(CoreV1Api);
    this.storage = kc.makeApiClient(StorageV1Api);
  }

  /**
   * Per node, the largest volume of the claim's storage class it reports room for (maximum
   * volume size, else capacity); undefined when there is no claim, no class, or no object at all
   * for the class (capacity tracking off): then room cannot decide placement.
   */
  async roomFor(claim: { namespace: string; name: string } | undefined): Promise<Map<string, number> | undefined> {
    if (!claim) return undefined;
    const timeout = this.o.timeoutMs ?? 10_000;
    let className: string | undefined;
    try {
      const pvc = await callApi(`get pvc ${claim.namespace}/${claim.name}`, timeout, () =>
        this.core.readNamespacedPersistentVolumeClaim({ name: claim.name, namespace: claim.namespace }));
      className = pvc.spec?.storageClassName ?? undefined;
    } catch (err) {
      if (hasStatus(err, 404)) return undefined;
      throw err;
    }
    if (!className) return undefined;
    const list = await callApi(`list csistoragecapacities in ${this.o.namespace}`, timeout, () =>
      this.storage.listNamespacedCSIStorageCapacity({ namespace: this.o.namespace }));
    const room = new Map<string, number>();
    let any = false;
    for (const c of list.items) {
      if (c.storageClassName !== className) continue;
      any = true;
      const node = c.nodeTopology?.matchLabels?.[this.o.topologyKey];
      const bytes = quantityBytes(c.maximumVolumeSize ?? c.capacity);
      if (node !== undefined && bytes !== undefined) room.set(node, Math.max(bytes, room.get(node) ?? 0));
    }
    return any ? room : undefined;
  }
}
