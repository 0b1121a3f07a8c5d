// Each node plugin's share of its replicated volumes (issue 19): the member files the RaidVolumes
// place on this node. From the one list-and-watch of replicated-index.ts it
//   - allocates this node's missing member files (thick, as node-local members: a full disk fails
//     here, not later under a pod's writes), marked as replicated (replica-marker.ts), so that
//     this node's member service exports them to the creating node;
//   - when a RaidVolume is marked for deletion, removes this node's member files (never while an
//     engine here serves the volume) and then this node's finalizer, which lets the object go
//     once every member node did the same; a node that was down at the time does it when it
//     comes back (the list at start);
//   - removes orphans: marked member files whose RaidVolume does not exist at all, only once
//     they are older than ORPHAN_AGE_MS (CreateVolume writes the RaidVolume before any member,
//     so a younger file may belong to a volume this node has not heard of yet). A file without
//     the mark (a node-local volume's member) is never touched.
// Every change of a volume runs under that volume's lock, shared with the CSI calls.

import { promises as fs } from 'node:fs';
import path from 'node:path';
import { EpochStore, recordOwnerOf } from '../engine/member-service/epoch-store.js';
import type { ReplicatedVolume, ReplicationStore } from '../k8s/replication.js';
import { describeError } from '../common/trace.js';
import type { DiskPool } from './disk-pool.js';
import { markPath, readMark, writeMark } from './replica-marker.js';
import type { ReplicatedIndex } from './replicated-index.js';
import { volumeKey, type VolumeLocks } from './volume-locks.js';

export const ORPHAN_AGE_MS = 10 * 60_000;

export interface MemberReconcilerOptions {
  node: string;
  pool: DiskPool;
  store: Pick<ReplicationStore, 'get' | 'removeFinalizer'>;
  index: ReplicatedIndex;
  locks: VolumeLocks;
  /** Whether an engine on this node serves the volume (staged here). */
  isServed: (volumeId: string) => Promise<boolean>;
  orphanAgeMs?: number;
  /** How long after start the orphan pass waits for the watch's first list (default 60 s). */
  orphanDelayMs?: number;
  log: (message: string) => void;
}

const finalizerOf = (node: string): string => `llraid.io/member-${node}`;

export class MemberReconciler {
  private started = false;
  private orphanTimer: NodeJS.Timeout | undefined;
  private orphanPass: Promise<void> | undefined;
  /** Volumes whose member files here all exist: changes of them (owner, status) need no look at the disks. */
  private readonly complete = new Set<string>();

  constructor(private readonly o: MemberReconcilerOptions) {}

  /**
   * Reconciles every volume the index's watch reports (its first list included: a node that was
   * down at delete time finds its volumes marked for deletion there), and looks for orphans once
   * that first list has surely arrived (orphanDelayMs), then every orphan age and whenever a
   * RaidVolume goes.
   */
  start(): void {
    if (this.started) return;
    this.started = true;
    this.o.index.onChange((v, gone) => void this.reconcile(v, gone).catch((err: unknown) => this.o.log(`replicated volume ${v.id}: ${describeError(err)}`)));
    this.o.index.start();
    const pass = (): void => {
      this.orphanPass ??= this.removeOrphans()
        .then(() => undefined, (err: unknown) => this.o.log(`orphan member files: ${describeError(err)}`))
        .finally(() => (this.orphanPass = undefined));
    };
    // Then every orphan age: a file too young to go at one pass goes at the next.
    this.orphanTimer = setTimeout(() => {
      pass();
      this.orphanTimer = setInterval(pass, this.o.orphanAgeMs ?? ORPHAN_AGE_MS);
      this.orphanTimer.unref();
    }, this.o.orphanDelayMs ?? 60_000);
    this.orphanTimer.unref();
  }

  /** Stops the delayed orphan pass (the index's watch is the caller's to close). */
  async close(): Promise<void> {
    if (this.orphanTimer) clearInterval(this.orphanTimer);
    this.orphanTimer = undefined;
    await this.orphanPass;
  }

  /** This node's placement entries of `v`. */
  private mine(v: ReplicatedVolume): ReplicatedVolume['placement'] {
    return v.placement.filter((p) => p.node === this.o.node);
  }

  async reconcile(v: ReplicatedVolume, gone: boolean): Promise<void> {
    if (gone || v.deleting) this.complete.delete(v.id);
    if (gone) await this.removeOrphans(new Set([v.id]));
    else if (v.deleting) await this.removeLocal(v);
    else if (this.mine(v).length > 0 && !this.complete.has(v.id)) await this.allocate(v);
  }

  /**
   * Allocates this node's member files of `v` that do not exist yet, on the disk each placement
   * entry names when this pool has one of that name with room (the creating node names its own
   * disks, and gives the other nodes the same names as a hint), else on the emptiest disk with
   * room that this volume does not use here yet. Returns this node's member paths in slot order.
   */
  async allocate(v: ReplicatedVolume): Promise<string[]> {
    return this.o.locks.with(volumeKey(v.id), async () => {
      const paths: string[] = [];
      const used = new Set<string>();
      const missing: ReplicatedVolume['placement'] = [];
      for (const entry of this.mine(v)) {
        const p = await this.o.pool.findMember(entry.file);
        if (p) used.add(path.dirname(p));
        else missing.push(entry);
      }
      for (const entry of missing) {
        const disk = (await this.namedDisk(entry.disk, v.memberBytes, used)) ?? (await this.pickDisk(v.memberBytes, used));
        const file = path.join(disk, entry.file);
        // The mark first: a crash between the two leaves a mark without a file (harmless), never
        // an unmarked file. The file is reserved under a name the member service does not export
        // and renamed into place whole: an engine never attaches a member still being allocated.
        await writeMark(file, { volume: v.id, slot: entry.slot });
        const part = `${file}.part`;
        await fs.rm(part, { force: true });
        try {
          await this.o.pool.allocate(part, v.memberBytes);
          await fs.rename(part, file);
        } catch (err) {
          await fs.rm(part, { force: true });
          await fs.rm(markPath(file), { force: true });
          throw err;
        }
        used.add(disk);
        this.o.log(`replicated volume ${v.id}: allocated member slot ${entry.slot} at ${file}`);
      }
      for (const entry of this.mine(v).sort((a, b) => a.slot - b.slot)) {
        const p = await this.o.pool.findMember(entry.file);
        if (p) paths.push(p);
      }
      if (paths.length === this.mine(v).length) this.complete.add(v.id);
      return paths;
    });
  }

  /** The pool disk a placement names, when there is one of that name with room that this volume does not use here yet. */
  private async namedDisk(name: string, size: number, used: Set<string>): Promise<string | undefined> {
    const disk = this.o.pool.diskNamed(name);
    if (disk === undefined || used.has(disk)) return undefined;
    const u = (await this.o.pool.usage()).find((d) => d.path === disk);
    return u && u.freeBytes >= size ? disk : undefined;
  }

  private async pickDisk(size: number, used: Set<string>): Promise<string> {
    const usage = (await this.o.pool.usage()).filter((u) => u.freeBytes >= size).sort((a, b) => b.freeBytes - a.freeBytes);
    const pick = usage.find((u) => !used.has(u.path)) ?? usage[0];
    // None with room: the emptiest, whose allocate fails with RESOURCE_EXHAUSTED naming it.
    return pick?.path ?? (await this.o.pool.place(1, size, 'a replicated member'))[0]!;
  }

  /**
   * This node's part of deleting `v`: its member files (with their marks and epoch records),
   * then its finalizer. Refused (left for a later pass) while an engine here serves the volume.
   * `locked`: the caller holds the volume's lock.
   */
  async removeLocal(v: ReplicatedVolume, options: { locked?: boolean } = {}): Promise<void> {
    // DeleteVolume holds the volume's lock already (the locks are not reentrant).
    const run = (fn: () => Promise<void>): Promise<void> => (options.locked ? fn() : this.o.locks.with(volumeKey(v.id), fn));
    await run(async () => {
      if (await this.o.isServed(v.id)) {
        this.o.log(`replicated volume ${v.id}: being deleted, but an engine here still serves it: its member files stay until it stops`);
        return;
      }
      for (const entry of this.mine(v)) {
        for (const disk of this.o.pool.disks) {
          const file = path.join(disk, entry.file);
          await removeMember(file);
          await fs.rm(`${file}.part`, { force: true });
          await fs.rm(markPath(file), { force: true });
        }
      }
      if (v.finalizers.includes(finalizerOf(this.o.node))) await this.o.store.removeFinalizer(v.id, this.o.node);
    });
  }

  /**
   * Removes marked member files whose RaidVolume does not exist (not known to the index, and then
   * read fresh to be sure) and that are older than the orphan age; `only`: just those volumes'
   * files. Returns the files removed.
   */
  async removeOrphans(only?: Set<string>): Promise<string[]> {
    const removed: string[] = [];
    const age = this.o.orphanAgeMs ?? ORPHAN_AGE_MS;
    const exists = new Map<string, boolean>();
    for (const file of await this.o.pool.memberFiles()) {
      const mark = await readMark(file);
      if (!mark || (only && !only.has(mark.volume)) || mark.ageMs < age) continue;
      if (!exists.has(mark.volume)) exists.set(mark.volume, this.o.index.has(mark.volume) || (await this.o.store.get(mark.volume)) !== undefined);
      if (exists.get(mark.volume)) continue;
      await this.o.locks.with(volumeKey(mark.volume), async () => {
        if (await this.o.isServed(mark.volume)) return;
        await removeMember(file);
        await fs.rm(markPath(file), { force: true });
        removed.push(file);
        this.o.log(`replicated volume ${mark.volume}: removed orphan member ${file} (no RaidVolume; made ${Math.round(mark.ageMs / 60_000)} min ago)`);
      });
    }
    return removed;
  }
}

/** A member file and its epoch record (kept by the member service and by engines here). */
async function removeMember(file: string): Promise<void> {
  await fs.rm(file, { force: true });
  await fs.rm(EpochStore.pathOf(recordOwnerOf(file)), { force: true });
}
