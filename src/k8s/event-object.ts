// The core/v1 Event object for one VolumeEvent on one involved object (a PVC, a PV or a
// RaidVolume). kubectl describe finds Events by the involved object's kind, namespace, name and
// uid, so the uid must be the object's real one.

import type { CoreV1Event } from '@kubernetes/client-node';
import type { VolumeEvent } from './volume-events.js';

export interface ObjectRef {
  apiVersion: string;
  kind: string;
  name: string;
  /** Absent for cluster-scoped objects; their Events go to the "default" namespace. */
  namespace?: string;
  uid: string;
}

/** Events of cluster-scoped objects live here, as kubectl and the kubelet expect. */
export const CLUSTER_EVENT_NAMESPACE = 'default';
export const EVENT_COMPONENT = 'csi.llraid.io';

let sequence = 0;

export function eventObject(ref: ObjectRef, ev: VolumeEvent, node: string, now: Date): CoreV1Event {
  const namespace = ref.namespace ?? CLUSTER_EVENT_NAMESPACE;
  // Unique per process and time, in the style of client-go: "<object>.<hex nanoseconds>".
  sequence = (sequence + 1) % 1000;
  const suffix = (BigInt(now.getTime()) * 1_000_000n + BigInt(process.pid % 1000) * 1000n + BigInt(sequence)).toString(16);
  return {
    apiVersion: 'v1',
    kind: 'Event',
    metadata: { name: `${ref.name}.${suffix}`, namespace },
    involvedObject: {
      apiVersion: ref.apiVersion,
      kind: ref.kind,
      name: ref.name,
      ...(ref.namespace ? { namespace: ref.namespace } : {}),
      uid: ref.uid,
    },
    reason: ev.reason,
    message: ev.message,
    type: ev.type,
    count: 1,
    firstTimestamp: now,
    lastTimestamp: now,
    source: { component: EVENT_COMPONENT, host: node },
    reportingComponent: EVENT_COMPONENT,
    reportingInstance: node,
  };
}
