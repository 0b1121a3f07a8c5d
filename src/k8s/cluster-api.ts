// The few API server calls the status reporter makes, behind an interface so the reporter's
// rate limiting and retries can be tested alone. KubeClusterApi is the real one
// (@kubernetes/client-node); it is the one place that maps client errors to K8sError.

import {
  ApiException,
  type CoreV1Event,
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  PatchStrategy,
  setHeaderOptions,
} from '@kubernetes/client-node';
import { trace } from '../common/trace.js';
import { K8sError } from './errors.js';
import { RAID_VOLUME_GROUP, RAID_VOLUME_PLURAL, RAID_VOLUME_VERSION } from './raid-volume.js';

export interface ClusterApi {
  /** Server-side apply of a RaidVolume (metadata + spec); returns the object's uid. */
  applyRaidVolume(body: Record<string, unknown>): Promise<string>;
  /** Server-side apply of the status subresource. */
  applyRaidVolumeStatus(name: string, body: Record<string, unknown>): Promise<void>;
  /** Deletes a RaidVolume; one already gone is not an error. */
  deleteRaidVolume(name: string): Promise<void>;
  /** The uid of a PVC (namespace given) or a PV; undefined when it does not exist. */
  uidOf(kind: 'PersistentVolumeClaim' | 'PersistentVolume', name: string, namespace?: string): Promise<string | undefined>;
  createEvent(body: CoreV1Event): Promise<void>;
}

/** The field manager the node plugin applies with; `kubectl get --show-managed-fields` shows it. */
export const FIELD_MANAGER = 'llraid-node';

function mapError(what: string, err: unknown): K8sError {
  if (err instanceof K8sError) return err;
  if (err instanceof ApiException) {
    const body = typeof err.body === 'string' ? err.body : JSON.stringify(err.body);
    let detail = body;
    try {
      const parsed = JSON.parse(body) as { message?: string };
      if (parsed.message) detail = parsed.message;
    } catch {
      // Not JSON: keep the raw body as the detail.
    }
    return new K8sError('EAPI', `${what}: API server answered ${err.code}: ${detail}`, err.code, { cause: err });
  }
  const message = err instanceof Error ? err.message : String(err);
  return new K8sError('EUNREACHABLE', `${what}: API server not reachable: ${message}`, undefined, { cause: err });
}

export class KubeClusterApi implements ClusterApi {
  private readonly core: CoreV1Api;
  private readonly custom: CustomObjectsApi;

  /** `kubeconfig`: a file; without it the in-cluster service account (or $KUBECONFIG, ~/.kube/config). */
  constructor(kubeconfig?: string, private readonly timeoutMs = 10_000) {
    const kc = new KubeConfig();
    if (kubeconfig) kc.loadFromFile(kubeconfig);
    else kc.loadFromDefault();
    this.core = kc.makeApiClient(CoreV1Api);
    this.custom = kc.makeApiClient(CustomObjectsApi);
  }

  // A hung connection must not stall the reporter's single worker: give up after timeoutMs and
  // let the retry logic take over.
  private async call<T>(what: string, run: () => Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new K8sError('EUNREACHABLE', `${what}: no answer from the API server within ${this.timeoutMs} ms`)), this.timeoutMs);
    });
    trace('k8s', 'debug', () => what);
    try {
      return await Promise.race([run(), timeout]);
    } catch (err) {
      const mapped = mapError(what, err);
      trace('k8s', 'info', () => `${mapped.message} (${mapped.code})`);
      throw mapped;
    } finally {
      clearTimeout(timer);
    }
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
    try {
      await this.call(`delete raidvolume ${name}`, () =>
        this.custom.deleteClusterCustomObject({ group: RAID_VOLUME_GROUP, version: RAID_VOLUME_VERSION, plural: RAID_VOLUME_PLURAL, name }),
      );
    } catch (err) {
      if (err instanceof K8sError && err.status === 404) return;
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
      if (err instanceof K8sError && err.status === 404) return undefined;
      throw err;
    }
  }

  async createEvent(body: CoreV1Event): Promise<void> {
    const namespace = body.metadata.namespace ?? 'default';
    await this.call(`create event ${body.reason ?? ''} in ${namespace}`, () => this.core.createNamespacedEvent({ namespace, body }));
  }
}
