// Which PVC and PV a volume was provisioned for (csi-provisioner --extra-create-metadata passes
// them to CreateVolume). The superblocks have no room for them, so a small JSON file sits beside
// each member (`<member>.claim`), where a restarted plugin finds it; status and Events use it to
// name the claim. Losing it loses only those names, never data.

import { promises as fs } from 'node:fs';

export interface VolumeClaim {
  namespace: string;
  name: string;
  persistentVolume?: string;
}

const PVC_NAME = 'csi.storage.k8s.io/pvc/name';
const PVC_NAMESPACE = 'csi.storage.k8s.io/pvc/namespace';
const PV_NAME = 'csi.storage.k8s.io/pv/name';

/** The claim named in CreateVolume parameters, when the provisioner passed one. */
export function claimFromParameters(parameters: Record<string, string>): VolumeClaim | undefined {
  const name = parameters[PVC_NAME];
  const namespace = parameters[PVC_NAMESPACE];
  if (!name || !namespace) return undefined;
  const pv = parameters[PV_NAME];
  return { namespace, name, ...(pv ? { persistentVolume: pv } : {}) };
}

export function claimPath(memberPath: string): string {
  return `${memberPath}.claim`;
}

/** Writes the claim beside every member (write then rename: a reader never sees half a file). */
export async function writeClaim(memberPaths: readonly string[], claim: VolumeClaim): Promise<void> {
  const text = `${JSON.stringify(claim)}\n`;
  for (const p of memberPaths) {
    await fs.writeFile(`${claimPath(p)}.tmp`, text, { mode: 0o600 });
    await fs.rename(`${claimPath(p)}.tmp`, claimPath(p));
  }
}

/** The claim recorded beside any of the members; undefined when none is (or none reads). */
export async function readClaim(memberPaths: readonly string[]): Promise<VolumeClaim | undefined> {
  for (const p of memberPaths) {
    try {
      const v = JSON.parse(await fs.readFile(claimPath(p), 'utf8')) as Partial<VolumeClaim>;
      if (typeof v.namespace === 'string' && typeof v.name === 'string') {
        return { namespace: v.namespace, name: v.name, ...(typeof v.persistentVolume === 'string' ? { persistentVolume: v.persistentVolume } : {}) };
      }
    } catch {
      continue;
    }
  }
  return undefined;
}

export async function removeClaim(memberPaths: readonly string[]): Promise<void> {
  await Promise.all(memberPaths.map((p) => fs.rm(claimPath(p), { force: true })));
}
