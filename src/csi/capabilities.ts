// Which volume capabilities llraid supports: mount (ext4, xfs) or raw block, with single-node
// access modes only, because every member of a volume lives on this one node (DESIGN.md §7).

import { invalid } from './errors.js';
import type { AccessModeName, VolumeCapability } from './messages.js';

const singleNodeModes: ReadonlySet<AccessModeName> = new Set([
  'SINGLE_NODE_WRITER',
  'SINGLE_NODE_READER_ONLY',
  'SINGLE_NODE_SINGLE_WRITER',
  'SINGLE_NODE_MULTI_WRITER',
]);

const fsTypes: ReadonlySet<string> = new Set(['', 'ext4', 'xfs']);

/** Why `cap` is unsupported, or undefined when llraid supports it. */
export function unsupportedReason(cap: VolumeCapability): string | undefined {
  const mode = cap.access_mode?.mode ?? 'UNKNOWN';
  if (!singleNodeModes.has(mode)) {
    return `access mode ${mode} is not supported: volumes are node-local, expected a SINGLE_NODE_* mode`;
  }
  if (cap.access_type === 'mount' || cap.mount) {
    const fs = cap.mount?.fs_type ?? '';
    if (!fsTypes.has(fs)) return `fs_type ${JSON.stringify(fs)} is not supported: expected ext4 or xfs`;
    return undefined;
  }
  if (cap.access_type === 'block' || cap.block) return undefined;
  return 'access type is missing: expected mount or block';
}

/** Rejects a missing or malformed capability list with INVALID_ARGUMENT (shape, not support). */
export function requireCapabilities(caps: VolumeCapability[] | undefined, what: string): VolumeCapability[] {
  if (!caps || caps.length === 0) throw invalid(`${what}: volume_capabilities is empty: expected at least one`);
  for (const cap of caps) {
    if (!cap.access_mode) throw invalid(`${what}: a volume capability has no access_mode`);
    if (!cap.mount && !cap.block) throw invalid(`${what}: a volume capability has no access type: expected mount or block`);
  }
  return caps;
}

export function isBlock(cap: VolumeCapability): boolean {
  return cap.access_type === 'block' || (!!cap.block && !cap.mount);
}

export function isReadOnlyMode(cap: VolumeCapability): boolean {
  return cap.access_mode?.mode === 'SINGLE_NODE_READER_ONLY';
}
