// The contract between the Kubernetes layer and the CSI layer for replicated volumes (issue 19):
// where a volume's placement and ownership are recorded (ReplicationStore, the RaidVolume), how
// a node learns which other nodes are alive (NodeLiveness, their Leases), and how this node keeps
// its own Lease and tells its engines how long they may acknowledge writes (LeaseKeeper).
// Types only (the implementations are exported beside them by index.ts, so that they can import
// these without a circle); docs/architecture.md ("Ownership, leases and the API server")
// explains the rules.

export interface ReplicaPlacement {
  slot: number;
  node: string;
  disk: string;
  /** Basename of the member file in `disk`: llraid-<id>-<slot>.img. */
  file: string;
}

export interface VolumeOwner {
  /** '' = released cleanly (no engine runs anywhere). */
  node: string;
  /** md's epoch of the engine the owner runs; fences older engines. */
  epoch: number;
  /** RFC 3339; when this owner took the volume. For people: never compared across nodes. */
  since: string;
}

export interface ReplicatedVolume {
  id: string;
  resourceVersion: string;
  level: 1 | 10;
  /** Members of the array: placement.length (one placement entry per slot). */
  members: number;
  chunkSize: number;
  replicas: number;
  disklessAttach: boolean;
  memberBytes: number;
  fsType: string;
  setName: string;
  recoverySpeed?: { minKiB: number; maxKiB: number };
  claim?: { namespace: string; name: string };
  placement: ReplicaPlacement[];
  owner: VolumeOwner;
  /** metadata.deletionTimestamp set: DeleteVolume marked it; member nodes remove their files. */
  deleting: boolean;
  finalizers: string[];
}

export type NewReplicatedVolume = Omit<ReplicatedVolume, 'resourceVersion' | 'deleting' | 'finalizers' | 'owner'> & {
  /** The node whose plugin ran CreateVolume (label llraid.io/node until a reporter writes the owner). */
  creator: string;
};

export interface ReplicationStore {
  get(id: string): Promise<ReplicatedVolume | undefined>;
  list(): Promise<ReplicatedVolume[]>;
  /** Creates with finalizers llraid.io/member-<node> per placement node, owner {'',0}. An existing object with the same id is returned as is. */
  create(v: NewReplicatedVolume): Promise<ReplicatedVolume>;
  /** Compare-and-swap of spec.owner on resourceVersion; a stale version throws K8sError code 'CONFLICT'. */
  setOwner(id: string, resourceVersion: string, owner: VolumeOwner): Promise<ReplicatedVolume>;
  /** Marks for deletion (finalizers keep it until every member node removed its files). */
  delete(id: string): Promise<void>;
  removeFinalizer(id: string, node: string): Promise<void>;
  /** One watch for all replicated volumes (re-listed on reconnect); calls back on add/change/delete. */
  watch(onChange: (v: ReplicatedVolume, gone: boolean) => void): { close(): void };
}

export interface NodeLiveness {
  /** Nodes whose llraid Lease is live as observed now, with their member service address. */
  liveNodes(): Promise<{ node: string; memberService: string }[]>;
  memberService(node: string): Promise<string | undefined>;
  /**
   * Every node that has a Lease naming a member service, expired or not (one list, no liveness
   * judged): where a node's services are, for a caller that must name a node it cannot reach.
   */
  knownNodes(): Promise<{ node: string; memberService: string }[]>;
  /** Resolves true once `node`'s Lease has expired as observed here (or the node carries out-of-service), false if timeoutMs passes first. */
  waitExpired(node: string, timeoutMs: number): Promise<boolean>;
}

/** This node's Lease, renewed; tells engines how long they may acknowledge writes. */
export interface LeaseKeeper {
  /** First renewal done (creates the Lease) before it resolves. */
  start(): Promise<void>;
  stop(): Promise<void>;
  /** ms the engines may still acknowledge writes (0 = lapsed). */
  validForMs(): number;
  /** Called after every renewal that extended the deadline (validForMs) and when a lapse is over (lapsed=true: the caller must re-check ownership before extending engines). */
  onRenewed(cb: (validForMs: number, afterLapse: boolean) => void): void;
}
