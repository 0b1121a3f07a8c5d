// An inventory of every object the API server holds, across all listable resource types, so a
// test can compare before and after (`helm uninstall` must leave nothing behind). Objects the
// control plane churns on its own (Events, Leases) are left out.

import type { KubeTools } from './kube-tools.js';

/** Resource types whose objects come and go without anyone installing anything. */
const CHURN = new Set(['events', 'events.events.k8s.io', 'leases.coordination.k8s.io']);

/** "resource namespace/name" for every object, sorted. */
export async function inventory(kube: KubeTools): Promise<string[]> {
  const types = (await kube.kubectl(['api-resources', '--verbs=list', '-o', 'name']))
    .split('\n')
    .map((s) => s.trim())
    .filter((s) => s && !CHURN.has(s));
  const out: string[] = [];
  // One kubectl call for all types; each item's kind + apiVersion tell them apart.
  const list = await kube.get<{ items: { apiVersion: string; kind: string; metadata: { name: string; namespace?: string } }[] }>([
    types.join(','),
    '-A',
  ]);
  for (const item of list?.items ?? []) {
    out.push(`${item.kind}.${item.apiVersion} ${item.metadata.namespace ?? ''}/${item.metadata.name}`);
  }
  return out.sort();
}

/** What `after` has that `before` had not. */
export function added(before: string[], after: string[]): string[] {
  const had = new Set(before);
  return after.filter((x) => !had.has(x));
}
