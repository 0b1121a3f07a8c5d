// ReplicationStore over the RaidVolume custom resource (@kubernetes/client-node): where a
// replicated volume's placement and ownership live. Every write that decides something is
// conditional on the resourceVersion the caller read (ownership, finalizers), so two nodes that
// race get one winner and one CONFLICT, never a lost update. Errors are mapped once, by callApi.
//
// Field managers: CreateVolume's fields and ownership are written by `llraid-replication` with
// POST and merge patches; the status reporter applies its own fields as `llraid-node` with
// server-side apply. Neither set contains the other's fields, so the reporter's apply neither
// takes over nor removes placement or owner (replicated-volume.ts).

import { CustomObjectsApi, type KubeConfig, PatchStrategy, setHeaderOptions, Watch } from '@kubernetes/client-node';
import { callApi, hasStatus, loadKubeConfig } from './api-call.js';
import { K8sError } from './errors.js';
import { ListWatch, type ListPage, type ListWatchStats, type WatchSource } from './list-watch.js';
import { RAID_VOLUME_GROUP, RAID_VOLUME_PLURAL, RAID_VOLUME_VERSION } from './raid-volume.js';
import {
  finalizersPatch,
  memberFinalizer,
  memberLabel,
  ownerPatch,
  parseReplicatedVolume,
  REPLICATED_LABEL,
  REPLICATION_FIELD_MANAGER,
  replicatedVolumeObject,
} from './replicated-volume.js';
import type { NewReplicatedVolume, ReplicatedVolume, ReplicationStore, VolumeOwner } from './replication.js';

export interface ReplicationStoreOptions {
  /** Bound on one API call (default 10 s). */
  timeoutMs?: number;
  /** The server ends each watch after this long (default 5 to 10 min, at random so nodes spread out); it resumes at once. */
  watchTimeoutSeconds?: number;
  /**
   * This node: watch() then follows only the volumes with a member here (label
   * member.llraid.io/<node>), so a change of one volume reaches its member nodes, not every
   * node of the cluster. Without it, the watch follows every replicated volume. list() and
   * get() see all volumes either way.
   */
  memberNode?: string;
  /** Told about list/watch failures (the watch retries by itself) and objects it cannot read; for logs. */
  onError?: (err: K8sError) => void;
  now?: () => Date;
}

const SELECTOR = `${REPLICATED_LABEL}=true`;
const PAGE = 500;
/** Attempts of removeFinalizer's read-modify-write before it gives up (each loss means another node progressed). */
const FINALIZER_ATTEMPTS = 10;

type RawObject = { metadata?: { name?: string; resourceVersion?: string; finalizers?: string[]; labels?: Record<string, string> } };

export class KubeReplicationStore implements ReplicationStore {
  private readonly custom: CustomObjectsApi;
  private readonly watcher: Watch;
  private readonly timeoutMs: number;
  private readonly ref = { group: RAID_VOLUME_GROUP, version: RAID_VOLUME_VERSION, plural: RAID_VOLUME_PLURAL };

  /** `kubeconfig`: a file or a loaded config; without it the in-cluster service account (or $KUBECONFIG). */
  constructor(kubeconfig?: string | KubeConfig, private readonly o: ReplicationStoreOptions = {}) {
    const kc = loadKubeConfig(kubeconfig);
    this.custom = kc.makeApiClient(CustomObjectsApi);
    this.watcher = new Watch(kc);
    this.timeoutMs = o.timeoutMs ?? 10_000;
  }

  private call<T>(what: string, run: () => Promise<T>): Promise<T> {
    return callApi(what, this.timeoutMs, run);
  }

  private async getRaw(id: string): Promise<RawObject | undefined> {
    try {
      return (await this.call(`get raidvolume ${id}`, () => this.custom.getClusterCustomObject({ ...this.ref, name: id }))) as RawObject;
    } catch (err) {
      if (hasStatus(err, 404)) return undefined;
      throw err;
    }
  }

  /** undefined also for a RaidVolume that is not replicated (a node-local volume's). */
  async get(id: string): Promise<ReplicatedVolume | undefined> {
    const raw = await this.getRaw(id);
    if (!raw || raw.metadata?.labels?.[REPLICATED_LABEL] !== 'true') return undefined;
    return parseReplicatedVolume(raw);
  }

  private async listPage(selector = SELECTOR): Promise<ListPage> {
    const items: unknown[] = [];
    let resourceVersion = '';
    let cont: string | undefined;
    do {
      const page = (await this.call(`list raidvolumes ${selector}`, () =>
        this.custom.listClusterCustomObject({ ...this.ref, labelSelector: selector, limit: PAGE, _continue: cont }),
      )) as { items?: unknown[]; metadata?: { resourceVersion?: string; continue?: string } };
      items.push(...(page.items ?? []));
      // Every page of one list is the same snapshot: the first page's version is the list's.
      if (!resourceVersion) resourceVersion = page.metadata?.resourceVersion ?? '';
      cont = page.metadata?.continue || undefined;
    } while (cont);
    return { items, resourceVersion };
  }

  /** Objects that cannot be read as a replicated volume are left out and reported to onError. */
  async list(): Promise<ReplicatedVolume[]> {
    const { items } = await this.listPage();
    const out: ReplicatedVolume[] = [];
    for (const item of items) {
      try {
        out.push(parseReplicatedVolume(item));
      } catch (err) {
        this.o.onError?.(err as K8sError);
      }
    }
    return out;
  }

  async create(v: NewReplicatedVolume): Promise<ReplicatedVolume> {
    const body = replicatedVolumeObject(v, (this.o.now ?? (() => new Date()))());
    try {
      const created = await this.call(`create raidvolume ${v.id}`, () =>
        this.custom.createClusterCustomObject({ ...this.ref, body, fieldManager: REPLICATION_FIELD_MANAGER }),
      );
      return parseReplicatedVolume(created);
    } catch (err) {
      if (!hasStatus(err, 409)) throw err;
    }
    // CreateVolume is idempotent by name: the object already there is the answer.
    const existing = await this.get(v.id);
    if (!existing) throw new K8sError('EAPI', `create raidvolume ${v.id}: expected a replicated volume under this name, found a RaidVolume without ${SELECTOR} (or none after 409)`, 409);
    return existing;
  }

  async setOwner(id: string, resourceVersion: string, owner: VolumeOwner): Promise<ReplicatedVolume> {
    const updated = await this.call(`set owner of raidvolume ${id} to ${owner.node || '(released)'} epoch ${owner.epoch}`, () =>
      this.custom.patchClusterCustomObject(
        { ...this.ref, name: id, body: ownerPatch(resourceVersion, owner), fieldManager: REPLICATION_FIELD_MANAGER },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      ),
    );
    return parseReplicatedVolume(updated);
  }

  async delete(id: string): Promise<void> {
    try {
      await this.call(`delete raidvolume ${id}`, () => this.custom.deleteClusterCustomObject({ ...this.ref, name: id }));
    } catch (err) {
      if (hasStatus(err, 404)) return;
      throw err;
    }
  }

  /**
   * Read, drop this node's finalizer, write back conditional on the version read: a list
   * written by two nodes at once loses neither's change (the loser re-reads and tries again).
   */
  async removeFinalizer(id: string, node: string): Promise<void> {
    const mine = memberFinalizer(node);
    for (let attempt = 1; attempt <= FINALIZER_ATTEMPTS; attempt++) {
      const raw = await this.getRaw(id);
      const finalizers = raw?.metadata?.finalizers ?? [];
      const rv = raw?.metadata?.resourceVersion;
      if (!raw || !rv || !finalizers.includes(mine)) return;
      try {
        await this.call(`remove finalizer ${mine} of raidvolume ${id}`, () =>
          this.custom.patchClusterCustomObject(
            { ...this.ref, name: id, body: finalizersPatch(rv, finalizers.filter((f) => f !== mine)), fieldManager: REPLICATION_FIELD_MANAGER },
            setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
          ),
        );
        return;
      } catch (err) {
        if (hasStatus(err, 404)) return;
        if (!(err instanceof K8sError && err.code === 'CONFLICT') || attempt === FINALIZER_ATTEMPTS) throw err;
      }
    }
  }

  watch(onChange: (v: ReplicatedVolume, gone: boolean) => void): { close(): void; stats(): ListWatchStats } {
    return new ListWatch<ReplicatedVolume>(this.source(), {
      parse: (obj) => {
        const v = parseReplicatedVolume(obj);
        return { key: v.id, resourceVersion: v.resourceVersion, value: v };
      },
      onChange,
      onError: this.o.onError,
    });
  }

  /** The real transport of the list-watch loop: paged lists and client-node's Watch. */
  private source(): WatchSource {
    const path = `/apis/${RAID_VOLUME_GROUP}/${RAID_VOLUME_VERSION}/${RAID_VOLUME_PLURAL}`;
    const selector = this.o.memberNode ? `${SELECTOR},${memberLabel(this.o.memberNode)}=true` : SELECTOR;
    return {
      list: () => this.listPage(selector),
      watch: async (resourceVersion, onEvent, onDone) => {
        const timeoutSeconds = this.o.watchTimeoutSeconds ?? 300 + Math.floor(Math.random() * 300);
        // The server ends the watch after timeoutSeconds; one still open well after that is on a
        // connection that died silently (no RST through a partition): end it here.
        let watchdog: NodeJS.Timeout | undefined;
        let ended = false;
        const done = (err: unknown) => {
          ended = true;
          clearTimeout(watchdog);
          onDone(err);
        };
        const controller = await this.watcher.watch(
          path,
          { labelSelector: selector, resourceVersion, allowWatchBookmarks: true, timeoutSeconds },
          (type, obj) => onEvent(type as Parameters<typeof onEvent>[0], obj),
          done,
        );
        if (!ended) {
          watchdog = setTimeout(() => controller.abort(), (timeoutSeconds + 30) * 1000);
          watchdog.unref();
        }
        return { abort: () => controller.abort() };
      },
    };
  }
}
