// The API calls of node liveness: this node renewing its Lease (coordination.k8s.io/v1,
// `llraid-node-<node>` in the driver's namespace), other nodes' Leases read, and a Node's
// out-of-service taint. Behind an interface so the keeper's and the observer's timing rules are
// tested with a fake (test/k8s/node-lease.test.ts, lease-observer.test.ts); KubeLeaseApi is the
// real one, its calls mapped to K8sError by callApi.

import { CoordinationV1Api, CoreV1Api, type KubeConfig, PatchStrategy, setHeaderOptions, type V1Lease } from '@kubernetes/client-node';
import { callApi, hasStatus, loadKubeConfig } from './api-call.js';

export const NODE_LEASE_PREFIX = 'llraid-node-';
/** On every llraid node Lease, so one list finds them all. */
export const NODE_LEASE_LABEL = 'llraid.io/node-lease';
/** Where the node's member service listens, `<host>:<port>`, for the engines of other nodes. */
export const MEMBER_SERVICE_ANNOTATION = 'llraid.io/member-service';
/** Set by an administrator on a node that is known to be down (kubectl taint): expired at once. */
export const OUT_OF_SERVICE_TAINT = 'node.kubernetes.io/out-of-service';
/** The field manager of the Lease writes. */
const LEASE_FIELD_MANAGER = 'llraid-node-lease';

export function nodeLeaseName(node: string): string {
  return `${NODE_LEASE_PREFIX}${node}`;
}

/** What a Lease says, as the observer reads it. */
export interface LeaseView {
  node: string;
  /** Changes with every renewal: the only thing an observer compares. */
  resourceVersion: string;
  /** The holder's promise: it stops acknowledging writes within this long of a renewal. */
  durationSeconds?: number;
  memberService?: string;
}

export interface LeaseRenewal {
  durationSeconds: number;
  memberService: string;
  /** For people (`kubectl get lease`); no node compares it with its own clock. */
  renewTime: Date;
}

export interface LeaseApi {
  /** Writes this node's renewal, creating the Lease when it does not exist. */
  renew(node: string, renewal: LeaseRenewal): Promise<void>;
  /** undefined when the Lease does not exist. */
  get(node: string): Promise<LeaseView | undefined>;
  list(): Promise<LeaseView[]>;
  /** The Node carries the taint node.kubernetes.io/out-of-service (any effect); false for no such Node. */
  outOfService(node: string): Promise<boolean>;
}

/** RFC 3339 with microseconds, the only form a Lease's MicroTime fields accept. */
function microTime(d: Date): string {
  return d.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

function view(lease: V1Lease): LeaseView | undefined {
  const name = lease.metadata?.name ?? '';
  if (!name.startsWith(NODE_LEASE_PREFIX) || !lease.metadata?.resourceVersion) return undefined;
  const v: LeaseView = { node: name.slice(NODE_LEASE_PREFIX.length), resourceVersion: lease.metadata.resourceVersion };
  if (typeof lease.spec?.leaseDurationSeconds === 'number') v.durationSeconds = lease.spec.leaseDurationSeconds;
  const service = lease.metadata.annotations?.[MEMBER_SERVICE_ANNOTATION];
  if (service) v.memberService = service;
  return v;
}

export class KubeLeaseApi implements LeaseApi {
  private readonly coordination: CoordinationV1Api;
  private readonly core: CoreV1Api;

  /** `namespace`: the driver's (LLRAID_NAMESPACE, the pod's namespace). */
  constructor(kubeconfig: string | KubeConfig | undefined, private readonly namespace: string, private readonly timeoutMs = 10_000) {
    const kc = loadKubeConfig(kubeconfig);
    this.coordination = kc.makeApiClient(CoordinationV1Api);
    this.core = kc.makeApiClient(CoreV1Api);
  }

  /**
   * One merge patch per renewal (no read first: only this node writes its Lease); a 404 means
   * the first renewal or a Lease someone deleted, and creates it.
   */
  async renew(node: string, r: LeaseRenewal): Promise<void> {
    const name = nodeLeaseName(node);
    const metadata = { labels: { [NODE_LEASE_LABEL]: 'true' }, annotations: { [MEMBER_SERVICE_ANNOTATION]: r.memberService } };
    const spec = { holderIdentity: node, leaseDurationSeconds: r.durationSeconds, renewTime: microTime(r.renewTime) };
    const patch = () =>
      callApi(`renew lease ${this.namespace}/${name}`, this.timeoutMs, () =>
        this.coordination.patchNamespacedLease(
          { name, namespace: this.namespace, body: { metadata, spec }, fieldManager: LEASE_FIELD_MANAGER },
          setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
        ),
      );
    try {
      await patch();
      return;
    } catch (err) {
      if (!hasStatus(err, 404)) throw err;
    }
    const body = { metadata: { name, namespace: this.namespace, ...metadata }, spec: { ...spec, acquireTime: microTime(r.renewTime) } };
    try {
      await callApi(`create lease ${this.namespace}/${name}`, this.timeoutMs, () =>
        this.coordination.createNamespacedLease({ namespace: this.namespace, body: body as unknown as V1Lease, fieldManager: LEASE_FIELD_MANAGER }),
      );
    } catch (err) {
      // Created meanwhile (a renewal of an earlier attempt that timed out here): renew it.
      if (!hasStatus(err, 409)) throw err;
      await patch();
    }
  }

  async get(node: string): Promise<LeaseView | undefined> {
    const name = nodeLeaseName(node);
    try {
      const lease = await callApi(`get lease ${this.namespace}/${name}`, this.timeoutMs, () => this.coordination.readNamespacedLease({ name, namespace: this.namespace }));
      return view(lease);
    } catch (err) {
      if (hasStatus(err, 404)) return undefined;
      throw err;
    }
  }

  async list(): Promise<LeaseView[]> {
    const leases = await callApi(`list leases in ${this.namespace}`, this.timeoutMs, () =>
      this.coordination.listNamespacedLease({ namespace: this.namespace, labelSelector: `${NODE_LEASE_LABEL}=true` }),
    );
    return leases.items.map(view).filter((v): v is LeaseView => v !== undefined);
  }

  async outOfService(node: string): Promise<boolean> {
    try {
      const n = await callApi(`get node ${node}`, this.timeoutMs, () => this.core.readNode({ name: node }));
      return (n.spec?.taints ?? []).some((t) => t.key === OUT_OF_SERVICE_TAINT);
    } catch (err) {
      if (hasStatus(err, 404)) return false;
      throw err;
    }
  }
}
