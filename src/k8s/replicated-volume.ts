// A replicated volume as a RaidVolume object and back: pure builders and a parser, so the
// store (replication-store.ts) only moves objects and the shapes can be tested alone.
//
// The spec fields written here (placement, owner, replicas, memberBytes, disklessAttach, ...)
// are not in the status reporter's apply configuration (raid-volume.ts raidVolumeSpec), so its
// server-side apply neither takes them over nor removes them: it only ever removes fields its
// own manager set before and now omits.

import { createHash } from 'node:crypto';
import { K8sError } from './errors.js';
import { NODE_LABEL, RAID_VOLUME_API_VERSION, RAID_VOLUME_KIND } from './raid-volume.js';
import type { NewReplicatedVolume, ReplicaPlacement, ReplicatedVolume, VolumeOwner } from './replication.js';

/** Label on every replicated RaidVolume: the watch selects on it, the reporter never deletes such one. */
export const REPLICATED_LABEL = 'llraid.io/replicated';
export const MEMBER_FINALIZER_PREFIX = 'llraid.io/member-';
/** The field manager of CreateVolume's fields and of ownership writes (`--show-managed-fields`). */
export const REPLICATION_FIELD_MANAGER = 'llraid-replication';

/** The name part (after the `/`) of a finalizer or a label key may have at most 63 characters. */
const NAME_PART_MAX = 63;

/**
 * `<prefix><node>` when that is a valid name part, else a prefix of it and a hash of the node
 * (still one per node): node names may be DNS subdomains of up to 253 characters.
 */
function perNodeName(prefix: string, node: string): string {
  const name = `${prefix}${node}`;
  if (name.length <= NAME_PART_MAX && /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/.test(name)) return name;
  const hash = createHash('sha256').update(node).digest('hex').slice(0, 10);
  return `${prefix}${node.slice(0, NAME_PART_MAX - prefix.length - 11)}-${hash}`;
}

/**
 * The finalizer member node `node` removes once its files are gone: llraid.io/member-<node>
 * (for a node name too long for a finalizer, a prefix of it and a hash).
 */
export function memberFinalizer(node: string): string {
  return `llraid.io/${perNodeName('member-', node)}`;
}

/** Label key prefix of the member nodes' labels. */
export const MEMBER_LABEL_PREFIX = 'member.llraid.io/';

/**
 * The label `member.llraid.io/<node>: "true"` on a replicated RaidVolume with a member on
 * `node`: a node's watch selects on it, so a change reaches the member nodes only.
 */
export function memberLabel(node: string): string {
  return `${MEMBER_LABEL_PREFIX}${perNodeName('', node)}`;
}

/** The distinct nodes of a placement, in slot order. */
export function placementNodes(placement: readonly ReplicaPlacement[]): string[] {
  return [...new Set([...placement].sort((a, b) => a.slot - b.slot).map((p) => p.node))];
}

const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

function check(ok: boolean, what: string): void {
  if (!ok) throw new K8sError('EINVAL', what);
}

/** Refuses what the RaidVolume could not record faithfully, before anything is written. */
function checkNew(v: NewReplicatedVolume): void {
  const where = `replicated volume ${JSON.stringify(v.id)}`;
  check(typeof v.id === 'string' && DNS1123_SUBDOMAIN.test(v.id) && v.id.length <= 253, `${where}: id: expected a DNS-1123 subdomain (the RaidVolume's name), found ${JSON.stringify(v.id)}`);
  check(v.level === 1 || v.level === 10, `${where}: level: expected 1 or 10, found ${String(v.level)}`);
  check(Number.isSafeInteger(v.replicas) && v.replicas >= 1, `${where}: replicas: expected an integer ≥ 1, found ${String(v.replicas)}`);
  check(Number.isSafeInteger(v.memberBytes) && v.memberBytes > 0, `${where}: memberBytes: expected an integer > 0, found ${String(v.memberBytes)}`);
  check(Number.isSafeInteger(v.chunkSize) && v.chunkSize >= 0, `${where}: chunkSize: expected an integer ≥ 0, found ${String(v.chunkSize)}`);
  check(typeof v.creator === 'string' && v.creator !== '', `${where}: creator: expected a node name, found ${JSON.stringify(v.creator)}`);
  // The member count is not a field of its own: one placement entry per slot.
  check(v.members === v.placement.length, `${where}: expected one placement entry per member (${v.members}), found ${v.placement.length}`);
  const slots = v.placement.map((p) => p.slot).sort((a, b) => a - b);
  check(slots.every((s, i) => s === i), `${where}: placement slots: expected 0..${v.members - 1} once each, found ${slots.join(',')}`);
  for (const p of v.placement) check(p.node !== '' && p.disk !== '' && p.file !== '', `${where}: placement slot ${p.slot}: expected node, disk and file, found ${JSON.stringify(p)}`);
  if (v.recoverySpeed) {
    const { minKiB, maxKiB } = v.recoverySpeed;
    check(Number.isSafeInteger(minKiB) && Number.isSafeInteger(maxKiB) && minKiB > 0 && minKiB <= maxKiB, `${where}: recoverySpeed: expected 0 < minKiB ≤ maxKiB, found ${JSON.stringify(v.recoverySpeed)}`);
  }
}

/** The object CreateVolume posts: placement and finalizers fixed, owner released at epoch 0. */
export function replicatedVolumeObject(v: NewReplicatedVolume, now: Date): Record<string, unknown> {
  checkNew(v);
  const owner: VolumeOwner = { node: '', epoch: 0, since: now.toISOString() };
  const spec: Record<string, unknown> = {
    level: `raid${v.level}`,
    // raid1 has no chunk (md records none): the StorageClass default would show as one.
    ...(v.level === 1 ? {} : { chunkSize: v.chunkSize }),
    // The node the status reporter then rewrites to the owner's; the creator until then.
    node: v.creator,
    replicas: v.replicas,
    disklessAttach: v.disklessAttach,
    memberBytes: v.memberBytes,
    fsType: v.fsType,
    setName: v.setName,
    placement: [...v.placement].sort((a, b) => a.slot - b.slot).map((p) => ({ slot: p.slot, node: p.node, disk: p.disk, file: p.file })),
    owner,
  };
  if (v.recoverySpeed) spec.recoverySpeed = { minKiB: v.recoverySpeed.minKiB, maxKiB: v.recoverySpeed.maxKiB };
  if (v.claim) spec.claim = { namespace: v.claim.namespace, name: v.claim.name };
  return {
    apiVersion: RAID_VOLUME_API_VERSION,
    kind: RAID_VOLUME_KIND,
    metadata: {
      name: v.id,
      labels: {
        [NODE_LABEL]: v.creator,
        [REPLICATED_LABEL]: 'true',
        ...Object.fromEntries(placementNodes(v.placement).map((n) => [memberLabel(n), 'true'])),
      },
      finalizers: placementNodes(v.placement).map(memberFinalizer),
    },
    spec,
  };
}

/** The merge patch of a compare-and-swap of the owner: the API server refuses it (409) unless resourceVersion is current. */
export function ownerPatch(resourceVersion: string, owner: VolumeOwner): Record<string, unknown> {
  return { metadata: { resourceVersion }, spec: { owner: { node: owner.node, epoch: owner.epoch, since: owner.since } } };
}

/** The merge patch that leaves `finalizers` as the object's list, conditional on resourceVersion. */
export function finalizersPatch(resourceVersion: string, finalizers: readonly string[]): Record<string, unknown> {
  return { metadata: { resourceVersion, finalizers: [...finalizers] } };
}

interface RawObject {
  metadata?: { name?: string; resourceVersion?: string; deletionTimestamp?: string; finalizers?: string[]; labels?: Record<string, string> };
  spec?: Record<string, unknown>;
}

function bad(name: string, what: string, found: unknown): K8sError {
  return new K8sError('EAPI', `raidvolume ${name}: ${what}, found ${JSON.stringify(found)}`);
}

function int(name: string, spec: Record<string, unknown>, key: string, min: number): number {
  const x = spec[key];
  if (typeof x !== 'number' || !Number.isSafeInteger(x) || x < min) throw bad(name, `spec.${key}: expected an integer ≥ ${min}`, x);
  return x;
}

function str(name: string, spec: Record<string, unknown>, key: string): string {
  const x = spec[key];
  if (typeof x !== 'string') throw bad(name, `spec.${key}: expected a string`, x);
  return x;
}

/** A RaidVolume of a replicated volume as the contract's type; EAPI when it is not one. */
export function parseReplicatedVolume(obj: unknown): ReplicatedVolume {
  const o = obj as RawObject;
  const name = o.metadata?.name ?? '?';
  if (o.metadata?.labels?.[REPLICATED_LABEL] !== 'true') throw bad(name, `expected the label ${REPLICATED_LABEL}=true`, o.metadata?.labels ?? {});
  const resourceVersion = o.metadata?.resourceVersion;
  if (!resourceVersion) throw bad(name, 'metadata.resourceVersion: expected one', resourceVersion);
  const spec = o.spec ?? {};
  const level = spec.level === 'raid1' ? 1 : spec.level === 'raid10' ? 10 : undefined;
  if (level === undefined) throw bad(name, 'spec.level: expected raid1 or raid10', spec.level);
  if (!Array.isArray(spec.placement)) throw bad(name, 'spec.placement: expected a list', spec.placement);
  const placement = (spec.placement as ReplicaPlacement[]).map((p) => ({ slot: p.slot, node: p.node, disk: p.disk, file: p.file }));
  const owner = spec.owner as Partial<VolumeOwner> | undefined;
  if (!owner || typeof owner.node !== 'string' || typeof owner.epoch !== 'number') throw bad(name, 'spec.owner: expected {node, epoch, since}', owner);
  if (typeof spec.disklessAttach !== 'boolean') throw bad(name, 'spec.disklessAttach: expected a boolean', spec.disklessAttach);
  const v: ReplicatedVolume = {
    id: name,
    resourceVersion,
    level,
    members: placement.length,
    chunkSize: level === 1 ? 0 : int(name, spec, 'chunkSize', 0),
    replicas: int(name, spec, 'replicas', 1),
    disklessAttach: spec.disklessAttach,
    memberBytes: int(name, spec, 'memberBytes', 1),
    fsType: str(name, spec, 'fsType'),
    setName: str(name, spec, 'setName'),
    placement,
    owner: { node: owner.node, epoch: owner.epoch, since: owner.since ?? '' },
    deleting: Boolean(o.metadata?.deletionTimestamp),
    finalizers: [...(o.metadata?.finalizers ?? [])],
  };
  const speed = spec.recoverySpeed as { minKiB?: number; maxKiB?: number } | undefined;
  if (speed && typeof speed.minKiB === 'number' && typeof speed.maxKiB === 'number') v.recoverySpeed = { minKiB: speed.minKiB, maxKiB: speed.maxKiB };
  const claim = spec.claim as { namespace?: string; name?: string } | undefined;
  if (claim && typeof claim.namespace === 'string' && typeof claim.name === 'string') v.claim = { namespace: claim.namespace, name: claim.name };
  return v;
}
