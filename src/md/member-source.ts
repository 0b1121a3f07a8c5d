// Where members come from: a name the array opens (and later closes) — through the caller's
// MemberOpener when it claims the name (a remote member's URI), else as a file path — or a
// BlockDevice the caller already holds (a fault-injecting device in tests). md knows nothing of
// NBD: the engine hands it an opener that does.

import { stat } from '../common/callback-fs.js';
import type { BlockDevice } from '../block/block-device.js';
import { isBlockError } from '../block/errors.js';
import { FileDevice, fileIdOf } from '../block/file-device.js';
import { baseDevice } from '../block/filter-device.js';
import { MdError } from './errors.js';
import { readSuperblock, type Superblock } from './superblock.js';

export type MemberSpec = string | { name: string; device: BlockDevice; writeMostly?: boolean; remote?: boolean };

/** What a MemberOpener gives for a name it claims. */
export interface OpenerResult {
  device: BlockDevice;
  /**
   * Read from it only when no other in-sync copy can serve the read (md's write-mostly); a
   * remote member's opener says so. Undefined: as the member's superblock says (devflags).
   */
  writeMostly?: boolean;
  /**
   * The device reaches the member over a network: when it drops out the array keeps trying to
   * open it again by its name, and re-adds it when it comes back (membership.ts, return check).
   */
  remote?: boolean;
}

/**
 * Opens the members the caller knows how to reach (the engine: `nbds://` URIs through its NBD
 * client), by name. Resolves undefined for a name that is not its own: md opens it as a file.
 * `signal` aborts an open the array stopped waiting for (the return check's attempt timed out).
 */
export type MemberOpener = (name: string, mode: { readOnly: boolean; signal?: AbortSignal }) => Promise<OpenerResult | undefined>;

export interface OpenedMember {
  name: string;
  device: BlockDevice;
  /** The engine opened it, so the engine closes it. */
  owned: boolean;
  /** The opener's flags; undefined for a file. */
  writeMostly?: boolean | undefined;
  remote: boolean;
}

/** A name that is a URI (`nbds://...`, `nbd+unix:///...`), never a path: compared by name only. */
export function isUriName(name: string): boolean {
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(name);
}

/**
 * Opens a member. A writable open takes the file for this process alone (FileDevice's
 * `exclusive`): while an engine runs an array, nothing else can assemble, check or repair it.
 * A name the opener claims is the opener's to open (and to lock, if its kind of member has locks).
 */
export async function openMember(spec: MemberSpec, readOnly = false, opener?: MemberOpener, signal?: AbortSignal): Promise<OpenedMember> {
  if (typeof spec !== 'string') return { name: spec.name, device: spec.device, owned: false, writeMostly: spec.writeMostly, remote: spec.remote ?? false };
  const claimed = await opener?.(spec, signal === undefined ? { readOnly } : { readOnly, signal });
  if (claimed !== undefined) return { name: spec, device: claimed.device, owned: true, writeMostly: claimed.writeMostly, remote: claimed.remote ?? false };
  if (isUriName(spec)) throw new MdError('EINVAL', `member ${spec}: a URI, and nothing here opens that kind of member`);
  return { name: spec, device: await FileDevice.open(spec, { readOnly, exclusive: !readOnly }), owned: true, remote: false };
}

/**
 * Refuses a member list that names one file (or one block device) twice, under the same name or
 * another (x.img and ./x.img, a symlink, a second device node): a "mirror" of one file holds
 * one copy. Paths that do not exist are left for the open to report.
 */
async function checkDistinct(specs: readonly MemberSpec[]): Promise<void> {
  const seen = new Map<string, string>();
  for (const s of specs) {
    const name = typeof s === 'string' ? s : s.name;
    let id: string | undefined;
    if (typeof s === 'string' && !isUriName(s)) {
      const st = await stat(s).catch(() => undefined);
      if (st !== undefined) id = fileIdOf(st);
    } else if (typeof s !== 'string') {
      const base = baseDevice(s.device);
      id = base instanceof FileDevice ? base.fileId : undefined;
    }
    const key = id ?? `name ${name}`;
    const first = seen.get(key);
    if (first !== undefined) {
      throw new MdError('EINVAL', first === name ? `member ${name}: given more than once` : `member ${name}: is the same ${id?.startsWith('block') ? 'device' : 'file'} as member ${first}; each member must be a distinct file or device`);
    }
    seen.set(key, name);
  }
}

/**
 * Whether `spec` names the file `device` has open (by device and inode, whatever the path), or
 * is that device itself.
 */
export async function namesDevice(spec: MemberSpec, device: BlockDevice): Promise<boolean> {
  if (typeof spec !== 'string') return spec.device === device;
  // An opener may hand md a file wrapped in a filter (the engine's epoch watch): the file counts.
  const base = baseDevice(device);
  if (!(base instanceof FileDevice) || isUriName(spec)) return false;
  const st = await stat(spec).catch(() => undefined);
  return st !== undefined && fileIdOf(st) === base.fileId;
}

/** Opens every spec; on any failure closes the ones already opened and rethrows. */
export async function openMembers(specs: readonly MemberSpec[], opener?: MemberOpener): Promise<OpenedMember[]> {
  return (await openReachableMembers(specs, opener, false)).opened;
}

/** A member named by URI whose opener could not reach it: its name and why. */
export interface UnreachableMember {
  name: string;
  reason: string;
}

/**
 * Whether the failed open of `spec` means "not reachable now" rather than "wrong": the name is a
 * URI, so only the opener opens it (an opener resolves undefined for names not its own, so its
 * rejection says the name is its own and the member did not answer), and the opener did not
 * refuse it as invalid (an MdError: a URI nothing claims, or one that does not parse) nor answer
 * that another engine took it (EFENCED: running without it would be split brain).
 */
export function isUnreachable(spec: MemberSpec, opener: MemberOpener | undefined, err: unknown): boolean {
  return typeof spec === 'string' && opener !== undefined && isUriName(spec) && !(err instanceof MdError) && !isBlockError(err, 'EFENCED');
}

/**
 * openMembers for assembly: with `tolerate`, a member the opener could not reach (isUnreachable)
 * is set apart instead of failing the whole open, so the array can start without it and watch it.
 */
export async function openReachableMembers(
  specs: readonly MemberSpec[], opener: MemberOpener | undefined, tolerate: boolean,
): Promise<{ opened: OpenedMember[]; unreachable: UnreachableMember[] }> {
  await checkDistinct(specs);
  const opened: OpenedMember[] = [];
  const unreachable: UnreachableMember[] = [];
  try {
    for (const s of specs) {
      try {
        opened.push(await openMember(s, false, opener));
      } catch (err) {
        if (!tolerate || !isUnreachable(s, opener, err)) throw err;
        unreachable.push({ name: s as string, reason: err instanceof Error ? err.message : String(err) });
      }
    }
  } catch (err) {
    await releaseMembers(opened);
    throw err;
  }
  return { opened, unreachable };
}

export async function releaseMembers(members: readonly OpenedMember[]): Promise<void> {
  await Promise.allSettled(members.filter((m) => m.owned).map((m) => m.device.close()));
}

/** The member's superblock, or undefined when it carries none (no magic); other damage throws. */
export async function probeSuperblock(m: OpenedMember): Promise<Superblock | undefined> {
  try {
    return await readSuperblock(m.device, m.name);
  } catch (err) {
    if (err instanceof MdError && err.code === 'EBADMETA' && /no md superblock|truncated/.test(err.message)) return undefined;
    throw err;
  }
}
