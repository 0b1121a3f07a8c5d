// The few API server calls the status reporter makes, behind an interface so the reporter's
// rate limiting and retries can be tested alone. KubeClusterApi is the real one
// (@kubernetes/client-node); its calls go through callApi (api-call.ts), which maps client
// errors to K8sError.

import { type CoreV1Event, CoreV1Api, CustomObjectsApi, type KubeConfig, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { callApi, hasStatus, loadKubeConfig } from './api-call.js';
import { K8sError } from './errors.js';
import { RAID_VOLUME_GROUP, RAID_VOLUME_PLURAL, RAID_VOLUME_VERSION } from './raid-volume.js';
import { REPLICATED_LABEL } from './replicated-volume.js';

export interface ClusterApi {
  /** Server-side apply of a RaidVolume (metadata + spec); returns the object's uid. */
  applyRaidVolume(body: Record<string, unknown>): Promise<string>;
  /** Server-side apply of the status subresource. */
  applyRaidVolumeStatus(name: string, body: Record<string, unknown>): Promise<void>;
  /** Deletes a RaidVolume; one already gone is not an error, a replicated one is left alone. */
  deleteRaidVolume(name: string): Promise<void>;
  /** The uid of a PVC (namespace given) or a PV; undefined when it does not exist. */
  uidOf(kind: 'PersistentVolumeClaim' | 'PersistentVolume', name: string, namespace?: string): Promise<string | undefined>;
  createEvent(body: CoreV1Event): Promise<void>;
}

/** The field manager the node plugin applies with; `kubectl get --show-managed-fields` shows it. */
export const FIELD_MANAGER = 'llraid-node';

export class KubeClusterApi implements ClusterApi {
  private readonly core: CoreV1Api;
  private readonly custom: CustomObjectsApi;

  /** `kubeconfig`: a file; without it the in-cluster service account (or $KUBECONFIG, ~/.kube/config). */
  constructor(kubeconfig?: string | KubeConfig, private readonly timeoutMs = 10_000) {
    const kc = loadKubeConfig(kubeconfig);
    this.core = kc.makeApiClient(CoreV1Api);
    this.custom = kc.makeApiClient(CustomObjectsApi);
  }

  private call<T>(what: string, run: () => Promise<T>): Promise<T> {
    return callApi(what, this.timeoutMs, run);
  }

  async applyRaidVolume(body: Record<string, unknown>): Promise<string> {
    const name = (body.metadata as { name: string }).name;
    const result = (await this.call(`apply raidvolume ${name}`, () =>
      this.custom.patchClusterCustomObject(
        { group: RAID_VOLUME_GROUP, version: RAID_VOLUME_VERSION, plural: RAID_VOLUME_PLURAL, name, body, fieldManager: FIELD_MANAGER, force: true },
        setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply),
      ),
    )) as { metadata?: { uid?: string } };
    const uid = result.metadata?.uid;
    if (!uid) throw new K8sError('EAPI', `apply raidvolume ${name}: expected an object with metadata.uid in the answer, found none`);
    return uid;
  }

  async applyRaidVolumeStatus(name: string, body: Record<string, unknown>): Promise<void> {
    await this.call(`apply raidvolume ${name} status`, () =>
      this.custom.patchClusterCustomObjectStatus(
        { group: RAID_VOLUME_GROUP, version: RAID_VOLUME_VERSION, plural: RAID_VOLUME_PLURAL, name, body, fieldManager: FIELD_MANAGER, force: true },
        setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply),
      ),
    );
  }

  async deleteRaidVolume(name: string): Promise<void> {
    const ref = { group: RAID_VOLUME_GROUP, version: RAID_VOLUME_VERSION, plural: RAID_VOLUME_PLURAL, name };
    try {
      // A replicated volume's RaidVolume holds its placement and ownership: only DeleteVolume
      // may mark it (replication-store.ts), never the reporter of a node that stops serving it.
      // The delete is conditional on the version read, so a label added in between is seen.
      const current = (await this.call(`get raidvolume ${name}`, () => this.custom.getClusterCustomObject(ref))) as {
        metadata?: { labels?: Record<string, string>; resourceVersion?: string };
      };
      if (current.metadata?.labels?.[REPLICATED_LABEL] === 'true') return;
      const preconditions = { resourceVersion: current.metadata?.resourceVersion };
      await this.call(`delete raidvolume ${name}`, () => this.custom.deleteClusterCustomObject({ ...ref, body: { preconditions } }));
    } catch (err) {
      if (hasStatus(err, 404)) return;
      throw err;
    }
  }

  async uidOf(kind: 'PersistentVolumeClaim' | 'PersistentVolume', name: string, namespace?: string): Promise<string | undefined> {
    try {
      const obj =
        kind === 'PersistentVolumeClaim'
          ? await this.call(`get pvc ${namespace}/${name}`, () => this.core.readNamespacedPersistentVolumeClaim({ name, namespace: namespace ?? 'default' }))
          : await this.call(`get pv ${name}`, () => this.core.readPersistentVolume({ name }));
      return obj.metadata?.uid;
    } catch (err) {
      if (hasStatus(err, 404)) return undefined;
      throw err;
    }
  }

  async createEvent(body: CoreV1Event): Promise<void> {
    const namespace = body.metadata.namespace ?? 'default';
    await this.call(`create event ${body.reason ?? ''} in ${namespace}`, () => this.core.createNamespacedEvent({ namespace, body }));
  }
}
