// Assembling an existing array from its members (mdadm --assemble): read every superblock, check
// they belong to one array, take the member with the highest events as authoritative, sort the
// others into in-sync, rebuilding, spare and stale, refuse to start without enough members
// (naming what is missing) unless forced, load the bitmap (Reload/Stale), and run.

import { MdArray, type ArrayIdentity, type ArrayTuning } from './array.js';
import { loadBitmap } from './bitmap-setup.js';
import { MdError } from './errors.js';
import { Member } from './member.js';
import { openMembers, releaseMembers, type MemberSpec, type OpenedMember } from './member-source.js';
import { createPersonality } from './personalities.js';
import {
  FEATURE_BITMAP_OFFSET, FEATURE_RECOVERY_OFFSET, RESYNC_NONE, ROLE_FAULTY, SECTOR, formatUuid,
  readSuperblock, type Superblock,
} from './superblock.js';

export interface AssembleOptions extends ArrayTuning {
  members: readonly MemberSpec[];
  /** Only members of this array (16 bytes or mdadm's 8:8:8:8 form); default: the one they share. */
  uuid?: Uint8Array | string;
  /** Start even though members the array had are missing or stale (runs degraded). */
  force?: boolean;
  /** llbitmap: idle seconds before the daemon cleans a page (default 5). */
  barrierIdle?: number;
}

/** What assembly found besides the members it started with. */
export interface AssemblyReport {
  stale: { name: string; events: string; reason: string }[];
  missingRoles: number[];
  /** The array was not stopped cleanly: a resync (bitmap-guided when there is a bitmap) follows. */
  unclean: boolean;
}

function parseUuid(u: Uint8Array | string): Buffer {
  if (typeof u !== 'string') return Buffer.from(u);
  const hex = u.replace(/[:-]/g, '');
  if (!/^[0-9a-fA-F]{32}$/.test(hex)) throw new MdError('EINVAL', `expected a UUID of 32 hex digits, found "${u}"`);
  return Buffer.from(hex, 'hex');
}

export async function assembleArray(options: AssembleOptions): Promise<{ array: MdArray; report: AssemblyReport }> {
  if (options.members.length === 0) throw new MdError('EINVAL', 'assemble: expected at least one member');
  const opened = await openMembers(options.members);
  const kept = new Set<OpenedMember>();
  let array: MdArray | undefined;
  try {
    const sbs: Superblock[] = [];
    for (const m of opened) sbs.push(await readSuperblock(m.device, m.name));
    const wanted = options.uuid !== undefined ? parseUuid(options.uuid) : (sbs[0] as Superblock).setUuid;
    const foreign = opened.filter((_, i) => !(sbs[i] as Superblock).setUuid.equals(wanted));
    if (foreign.length > 0) {
      throw new MdError('EUUID', foreign.map((m) => `member ${m.name}: belongs to array ${formatUuid((sbs[opened.indexOf(m)] as Superblock).setUuid)}, expected ${formatUuid(wanted)}`).join('; '));
    }
    let freshIdx = 0;
    sbs.forEach((sb, i) => {
      if (sb.events > (sbs[freshIdx] as Superblock).events) freshIdx = i;
    });
    const fresh = sbs[freshIdx] as Superblock;
    const raidDisks = fresh.raidDisks;
    const report: AssemblyReport = { stale: [], missingRoles: [], unclean: fresh.resyncOffset !== RESYNC_NONE };
    const byRole: (Member | undefined)[] = new Array<Member | undefined>(raidDisks).fill(undefined);
    const members: Member[] = [];
    // Freshest first, so that of two members claiming one role the fresher keeps it.
    const order = opened.map((_, i) => i).sort((a, b) => Number((sbs[b] as Superblock).events - (sbs[a] as Superblock).events));
    for (const i of order) {
      const m = opened[i] as OpenedMember;
      const sb = sbs[i] as Superblock;
      const role = fresh.devRoles[sb.devNumber];
      const ownRole = sb.devRoles[sb.devNumber];
      const stale = (reason: string): void => {
        report.stale.push({ name: m.name, events: sb.events.toString(), reason });
      };
      if (role === undefined || role === ROLE_FAULTY) {
        stale(`recorded as failed or removed by the array (events ${sb.events}, array ${fresh.events})`);
        continue;
      }
      const member = new Member(m.name, m.device, sb, m.owned);
      if (role >= raidDisks) {
        member.state = 'spare';
      } else if (ownRole !== role || sb.events + 1n < fresh.events) {
        // md's event margin of one: a crash between superblock writes leaves members one apart.
        stale(`events ${sb.events} lag the array's ${fresh.events}`);
        continue;
      } else if (byRole[role] !== undefined) {
        stale(`role ${role} is already held by ${byRole[role]?.name}`);
        continue;
      } else {
        member.role = role;
        if ((sb.featureMap & FEATURE_RECOVERY_OFFSET) !== 0) {
          member.state = 'rebuilding';
          member.recoveryOffset = sb.recoveryOffset * SECTOR;
        } else {
          member.state = 'in_sync';
        }
        byRole[role] = member;
      }
      members.push(member);
      kept.add(m);
    }
    report.missingRoles = byRole.flatMap((m, r) => (m === undefined ? [r] : []));
    const working = byRole.map((m) => m?.state === 'in_sync');
    const personality = createPersonality({
      level: fresh.level, raidDisks, layout: fresh.layout, chunkSize: fresh.chunkSize * SECTOR, memberSize: fresh.size * SECTOR,
    });
    const staleText = report.stale.map((s) => `member ${s.name} is stale (${s.reason})`).join('; ');
    const missingText = report.missingRoles.length > 0 ? `missing role${report.missingRoles.length > 1 ? 's' : ''} ${report.missingRoles.join(', ')}` : '';
    const detail = [missingText, staleText].filter((t) => t !== '').join('; ');
    if (!personality.canRun(working)) {
      throw new MdError('ENODEV', `array ${fresh.setName} (${formatUuid(fresh.setUuid)}): not enough members to run raid${fresh.level}: ${working.filter((w) => w).length} of ${raidDisks} in sync; ${detail}`);
    }
    // Roles the freshest superblock still assigns to a member that did not come: newly missing.
    const expected = new Set(fresh.devRoles.filter((r) => r < raidDisks));
    const newlyMissing = report.missingRoles.filter((r) => expected.has(r));
    if (newlyMissing.length > 0 && !options.force) {
      throw new MdError('ENODEV', `array ${fresh.setName} (${formatUuid(fresh.setUuid)}): would start degraded: ${detail}; use force to start anyway`);
    }
    const identity: ArrayIdentity = {
      uuid: fresh.setUuid, name: fresh.setName, ctime: fresh.ctime, level: fresh.level, layout: fresh.layout,
      chunkSizeSectors: fresh.chunkSize, raidDisks, usedSectors: fresh.size,
      bitmapOffset: (fresh.featureMap & FEATURE_BITMAP_OFFSET) !== 0 ? fresh.bitmapOffset : 0,
    };
    const resyncFrom = personality.syncSize === 0 || fresh.resyncOffset === RESYNC_NONE
      ? null
      : Math.min(Number(fresh.resyncOffset) * SECTOR, personality.syncSize);
    array = new MdArray({ identity, personality, members, devRoles: fresh.devRoles, events: fresh.events, resyncFrom, tuning: options });
    const faultySlots = fresh.devRoles.filter((r) => r === ROLE_FAULTY).length;
    const vacantRoles = raidDisks - fresh.devRoles.filter((r) => r < raidDisks).length;
    const knownHistory = faultySlots <= vacantRoles;
    array.setRoleHistory(Array.from({ length: raidDisks }, (_, r) => (expected.has(r) || knownHistory ? 0 : Infinity)));
    array.attachBitmap(await loadBitmap(identity.bitmapOffset !== 0 ? 'llbitmap' : 'none', array.bitmapHost, {
      ioSize: array.blockSize, syncSize: personality.syncSize, dataOffsetSectors: fresh.dataOffset,
      bitmapOffsetSectors: identity.bitmapOffset,
      ...(options.barrierIdle === undefined ? {} : { barrierIdle: options.barrierIdle }),
    }));
    await array.run();
    await releaseMembers(opened.filter((m) => !kept.has(m)));
    return { array, report };
  } catch (err) {
    if (array?.bitmap !== undefined) await array.bitmap.close().catch(() => undefined);
    await releaseMembers(opened);
    throw err;
  }
}
