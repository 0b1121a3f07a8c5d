// The llraid Helm chart as the cluster tests install it (charts/llraid, release "llraid"), and
// the lookups the tests make in what it installed: the StorageClass of a RAID level.

import { join } from 'node:path';
import type { ClusterEnv } from './cluster-env.js';
import type { KubeObject, KubeTools } from './kube-tools.js';

export const RELEASE = 'llraid';
export const NAMESPACE = 'llraid-system';
export const DRIVER = 'csi.llraid.io';

export function chartDir(env: ClusterEnv): string {
  return join(env.repo, 'charts', 'llraid');
}

/** The StorageClass of `driver` whose `level` parameter is `level` ("1" or "raid1" alike). */
export async function storageClassForLevel(kube: KubeTools, level: number): Promise<KubeObject> {
  const classes = await kube.list(['storageclasses']);
  const mine = classes.filter((sc) => sc.provisioner === DRIVER);
  const found = mine.find((sc) => {
    const p = (sc.parameters as Record<string, string> | undefined)?.level;
    return p === String(level) || p === `raid${level}`;
  });
  if (!found) {
    throw new Error(
      `expected a StorageClass of ${DRIVER} with parameter level=${level}, found: ${mine.map((sc) => `${sc.metadata.name} (level ${String((sc.parameters as Record<string, string> | undefined)?.level)})`).join(', ') || 'none'}`,
    );
  }
  return found;
}
