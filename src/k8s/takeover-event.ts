// The TakeOver Event on a replicated volume's PVC: a node took the volume over from another whose
// node Lease had expired (issue 19). Written once, when the take-over happens (the CSI layer's
// NodeStage), not derived from status snapshots as the other volume Events are: no snapshot of
// the new owner knows the previous one.

import type { ClusterApi } from './cluster-api.js';
import { eventObject } from './event-object.js';

/** Writes the Event; false when the PVC does not exist (nothing to attach it to). */
export async function writeTakeOverEvent(
  api: Pick<ClusterApi, 'uidOf' | 'createEvent'>,
  node: string,
  claim: { namespace: string; name: string },
  message: string,
  now = new Date(),
): Promise<boolean> {
  const uid = await api.uidOf('PersistentVolumeClaim', claim.name, claim.namespace);
  if (!uid) return false;
  await api.createEvent(eventObject(
    { apiVersion: 'v1', kind: 'PersistentVolumeClaim', name: claim.name, namespace: claim.namespace, uid },
    { reason: 'TakeOver', type: 'Warning', message },
    node,
    now,
  ));
  return true;
}
