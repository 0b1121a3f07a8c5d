// NodeStage and NodeUnstage of a replicated volume on this node (issue 19), the parts that differ
// from a node-local one: ownership first (volume-ownership.ts), then the engine's arguments —
// this node's members as files, the others through their nodes' member services as nbds URIs,
// the owner's epoch, the TLS files, the lease the engine may acknowledge writes under, and
// `--force` so that a member whose node is down does not keep the volume from starting (md
// watches it and re-adds it from the bitmap when it answers again). NodeServer does the rest
// (attach, filesystem, mounts) as for any volume.

import { promises as fs } from 'node:fs';
import path from 'node:path';
import { arrayBytes, MEMBER_DATA_OFFSET } from '../md/index.js';
import type { LeaseKeeper, ReplicatedVolume } from '../k8s/replication.js';
import type { DiskPool } from './disk-pool.js';
import type { EngineLeases } from './engine-leases.js';
import { CsiError } from './errors.js';
import type { FsType } from './parameters.js';
import type { ReplicatedIndex } from './replicated-index.js';
import type { VolumeCatalog, VolumeRecord } from './volume-catalog.js';
import type { Acquired, VolumeOwnership } from './volume-ownership.js';
import { decodeSetName } from './volume-name.js';
import { attachOnce, type MemberProbe } from './member-probe.js';
import { MEMBER_TLS_NAME, type TlsFiles } from './member-tls.js';
import { describeError } from '../common/trace.js';
import { FencedError } from '../block/errors.js';

const isFencedError = (err: unknown): boolean => err instanceof FencedError;

/**
 * A member file on another node, through its member service at `address` (host:port): exported
 * there as `file:<basename>`, the certificate checked against the cluster's member name rather
 * than the node's address (one certificate for every node).
 */
export function memberUri(address: string, file: string): string {
  return `nbds://${address}/file:${encodeURIComponent(file)}?tls-hostname=${MEMBER_TLS_NAME}`;
}

/** The node of an engine's member of `v`, named by path (here) or by member URI (elsewhere). */
export function memberNodeOf(v: Pick<ReplicatedVolume, 'placement'>): (member: string) => string | undefined {
  return (member) => v.placement.find((p) => path.basename(member) === p.file || member.includes(`/file:${encodeURIComponent(p.file)}`))?.node;
}

/** How a volume's engine reaches its members, with what it presents. */
export interface EngineArgsInput {
  volume: ReplicatedVolume;
  node: string;
  epoch: number;
  /** ms the engine may acknowledge writes from its start. */
  leaseMs: number;
  tls: TlsFiles;
  /** This node's member file of a placement entry, when it exists. */
  localPath: (entry: ReplicatedVolume['placement'][number]) => Promise<string | undefined>;
  memberService: (node: string) => Promise<string | undefined>;
}

/**
 * The `serve` arguments of a replicated volume's engine, members in slot order. A member that
 * cannot be named (this node's file missing, a node with no member service address) is left
 * out and listed in `missing`: md assembles without it (force) as without a member that is away.
 */
export async function replicatedEngineArgs(i: EngineArgsInput): Promise<{ args: string[]; missing: string[] }> {
  const members: string[] = [];
  const missing: string[] = [];
  const services = new Map<string, string | undefined>();
  for (const entry of [...i.volume.placement].sort((a, b) => a.slot - b.slot)) {
    if (entry.node === i.node) {
      const p = await i.localPath(entry);
      if (p) members.push(p);
      else missing.push(`slot ${entry.slot}: ${entry.file} is not on this node's disks`);
      continue;
    }
    if (!services.has(entry.node)) services.set(entry.node, await i.memberService(entry.node));
    const address = services.get(entry.node);
    if (address) members.push(memberUri(address, entry.file));
    else missing.push(`slot ${entry.slot}: node ${entry.node} has no member service address`);
  }
  const remote = members.some((m) => m.startsWith('nbds://'));
  const speed = i.volume.recoverySpeed;
  return {
    args: [
      '--epoch', String(i.epoch),
      '--lease-ms', String(Math.max(0, Math.floor(i.leaseMs))),
      '--force',
      ...(remote ? ['--tls-cert', i.tls.cert, '--tls-key', i.tls.key, '--tls-ca', i.tls.ca] : []),
      ...(speed ? ['--sync-speed-min', String(speed.minKiB), '--sync-speed-max', String(speed.maxKiB)] : []),
      ...members,
    ],
    missing,
  };
}

/**
 * What the Node service shows of a replicated volume (NodePublish, stats, conditions): its
 * geometry from the RaidVolume; health comes from its engine's live status while staged.
 */
export function replicatedRecord(v: ReplicatedVolume): VolumeRecord {
  const memberData = Math.max(0, v.memberBytes - MEMBER_DATA_OFFSET);
  const near = v.level === 10 ? v.replicas : 2;
  const named = decodeSetName(v.setName);
  return {
    id: v.id,
    setName: v.setName,
    nameKey: named?.key ?? v.setName,
    fsType: (v.fsType === 'xfs' ? 'xfs' : 'ext4') satisfies FsType,
    level: v.level,
    raidDisks: v.members,
    chunkSize: v.level === 1 ? 0 : v.chunkSize,
    bitmap: 'llbitmap',
    memberSize: memberData,
    capacity: arrayBytes(v.level, v.members, v.chunkSize || 4096, memberData, near),
    members: [],
    missingRoles: [],
    staleMembers: [],
    resyncPending: false,
    ctime: 0,
  };
}

/**
 * An engine restarted by its supervisor (it died while staged) must not grant itself the lease
 * it started with: by then the node may no longer hold one. It starts lapsed (--lease-ms 0) and
 * acknowledges writes from the next renewal on (within the renewal period).
 */
export const RESTART_LEASE_MS = 0;

export interface EnginePlan {
  epoch: number;
  /** This call took ownership (a failure to come up gives it back). */
  taken: boolean;
  /** Arguments of the engine this call starts. */
  start: string[];
  /** Arguments its supervisor restarts it with (lapsed lease). */
  restart: string[];
  acquired: Acquired;
}

export interface ReplicatedStageOptions {
  node: string;
  /** Where engines keep their sockets, one directory per volume (as the supervisor makes them). */
  runDir: string;
  index: ReplicatedIndex;
  ownership: VolumeOwnership;
  keeper: Pick<LeaseKeeper, 'validForMs'>;
  leases: EngineLeases;
  pool: DiskPool;
  tls: TlsFiles;
  memberService: (node: string) => Promise<string | undefined>;
  /** host:port of this node's own member service. */
  ownMemberService: string;
  /** How a member is attached once through a member service (default: the NBD client). */
  probe?: MemberProbe;
  /** A take-over happened (for the log and the PVC's TakeOver Event). */
  onTakeOver?: (v: ReplicatedVolume, from: string, epoch: number) => void;
  log: (message: string) => void;
}

export class ReplicatedStage {
  constructor(private readonly o: ReplicatedStageOptions) {}

  /** The replicated volume `id`, or undefined when it is not one (or does not exist). */
  find(id: string): Promise<ReplicatedVolume | undefined> {
    return this.o.index.get(id);
  }

  /** This node's file of a placement entry (the name is unique: volume id and slot), on any disk of the pool. */
  async localPath(entry: ReplicatedVolume['placement'][number]): Promise<string | undefined> {
    return this.o.pool.findMember(entry.file);
  }

  /**
   * Before an engine starts here: refuses a node with no member unless the volume allows
   * diskless attach, and a node whose Lease is not held (no engine could acknowledge a write);
   * then takes ownership (waiting for a previous owner's Lease, bounded) and names the members.
   */
  async prepare(v: ReplicatedVolume): Promise<EnginePlan> {
    const nodes = [...new Set(v.placement.map((p) => p.node))];
    if (!nodes.includes(this.o.node) && !v.disklessAttach) {
      throw new CsiError(
        'FAILED_PRECONDITION',
        `NodeStageVolume: volume ${v.id} has no member on node ${this.o.node} (its members are on ${nodes.join(', ')}), and its StorageClass does not allow diskless attach (disklessAttach: "true")`,
      );
    }
    if (this.o.keeper.validForMs() <= 0) {
      throw new CsiError('UNAVAILABLE', `NodeStageVolume: volume ${v.id}: node ${this.o.node} does not hold its llraid node lease (the API server was not reached lately), so no engine here may acknowledge writes; retry`);
    }
    const acquired = await this.o.ownership.acquire(v.id);
    if (acquired.tookOverFrom !== undefined) {
      this.o.log(`volume ${v.id}: node ${this.o.node} took over from node ${acquired.tookOverFrom} (lease expired), epoch ${acquired.epoch}`);
      this.o.onTakeOver?.(acquired.volume, acquired.tookOverFrom, acquired.epoch);
    }
    try {
      if (acquired.taken) await this.reclaimLocal(acquired.volume, acquired.epoch);
      return { ...(await this.argsFor(acquired.volume, acquired.epoch)), taken: acquired.taken, acquired };
    } catch (err) {
      if (acquired.taken) await this.release(v.id).catch(() => undefined);
      throw err;
    }
  }

  /**
   * With a new epoch, before the engine opens this node's members itself: attaches each once
   * through this node's member service with that epoch. The service then fences (and lets go of)
   * any connection a previous owner's engine still has to them — after a partition it may hold
   * them open for a long while, and the file lock would keep the engine here out — and records
   * the epoch, which the engine presents again. A service that cannot be reached holds nothing:
   * the engine's own open records the epoch then.
   */
  private async reclaimLocal(v: ReplicatedVolume, epoch: number): Promise<void> {
    const probe = this.o.probe ?? attachOnce;
    for (const entry of v.placement.filter((p) => p.node === this.o.node)) {
      try {
        await probe(memberUri(this.o.ownMemberService, entry.file), this.o.tls, epoch);
      } catch (err) {
        if (isFencedError(err)) throw err;
        this.o.log(`volume ${v.id}: member ${entry.file} through this node's member service (to fence an older engine's connection): ${describeError(err)}`);
      }
    }
  }

  /** The engine arguments of `v` at `epoch`: to start it now (the lease held now) and to restart it (lapsed). */
  async argsFor(v: ReplicatedVolume, epoch: number): Promise<{ epoch: number; start: string[]; restart: string[] }> {
    const input = {
      volume: v, node: this.o.node, epoch, tls: this.o.tls,
      localPath: (e: ReplicatedVolume['placement'][number]) => this.localPath(e), memberService: this.o.memberService,
    };
    const start = await replicatedEngineArgs({ ...input, leaseMs: this.o.keeper.validForMs() });
    if (start.missing.length > 0) this.o.log(`volume ${v.id}: its engine runs without ${start.missing.join('; ')}`);
    const restart = await replicatedEngineArgs({ ...input, leaseMs: RESTART_LEASE_MS });
    return { epoch, start: start.args, restart: restart.args };
  }

  /**
   * The replicated volumes a restarted plugin must look at, as they are now: those with an engine
   * directory in the run dir (an engine may still run, or an attachment be left, for a volume
   * taken meanwhile) and those the index says this node owns. `skip`: node-local volumes' ids.
   */
  async recoverable(skip: ReadonlySet<string>): Promise<ReplicatedVolume[]> {
    const dirs = (await fs.readdir(this.o.runDir).catch(() => [] as string[])).filter((d) => /^[0-9a-f]{32}$/.test(d) && !skip.has(d));
    const ids = new Set([...dirs, ...this.o.index.all().filter((v) => v.owner.node === this.o.node).map((v) => v.id)]);
    const out: ReplicatedVolume[] = [];
    for (const id of ids) {
      const v = await this.o.index.fresh(id);
      if (v) out.push(v);
    }
    return out;
  }

  /** Passes the current lease to an engine that runs here (adopted after a restart). */
  push(id: string): Promise<void> {
    return this.o.leases.push(id);
  }

  /** The engine runs: it gets every lease from now on. */
  started(id: string, epoch: number): void {
    this.o.leases.add(id, epoch);
  }

  /** The engine is about to stop (NodeUnstage): no more leases for it. */
  stopping(id: string): void {
    this.o.leases.remove(id);
  }

  /** After the engine stopped cleanly (NodeUnstage) or failed to come up: released, epoch kept. */
  async release(id: string): Promise<void> {
    this.o.leases.remove(id);
    await this.o.ownership.release(id);
  }
}

/** Keeps node-local lookups first: a replicated volume is asked of the index only when the catalog has no such volume. */
export async function findAny(
  catalog: VolumeCatalog,
  replicated: ReplicatedStage | undefined,
  id: string,
): Promise<{ record: VolumeRecord; replicated?: ReplicatedVolume } | undefined> {
  const local = await catalog.get(id);
  if (local) return { record: local };
  const v = await replicated?.find(id);
  return v ? { record: replicatedRecord(v), replicated: v } : undefined;
}
