// Assembling an existing array from its members (mdadm --assemble): read every superblock, check
// they belong to one array, take the member with the highest events as authoritative, sort the
// others into in-sync, rebuilding, spare and stale, refuse to start without enough members
// (naming what is missing) unless forced, load the bitmap (Reload/Stale), and run.

import { MdArray, type ArrayIdentity, type ArrayTuning } from './array/md-array.js';
import { loadBitmap } from './bitmap-setup.js';
import { MdError } from './errors.js';
import { Member } from './member.js';
import { openReachableMembers, releaseMembers, type MemberOpener, type MemberSpec, type OpenedMember } from './member-source.js';
import { createPersonality } from './levels.js';
import type { BitmapLoadReport } from './write-intent-bitmap.js';
import {
  FEATURE_BITMAP_OFFSET, FEATURE_RECOVERY_OFFSET, RESYNC_NONE, ROLE_FAULTY, ROLE_SPARE, SECTOR, formatUuid,
  readSuperblock, type Superblock,
} from './superblock.js';
import { describeError, trace } from '../common/trace.js';
import { DEFAULT_TUNING } from './tuning.js';

export interface AssembleOptions extends ArrayTuning {
  members: readonly MemberSpec[];
  /** Only members of this array (16 bytes or mdadm's 8:8:8:8 form); default: the one they share. */
  uuid?: Uint8Array | string;
  /**
   * Start even though members the array had are missing or stale (runs degraded). A remote
   * member that cannot be reached is left out too, and watched: opened again every
   * returnIntervalMs and re-added when it answers, as one that dropped out while running.
   */
  force?: boolean;
  /** llbitmap: idle seconds before the daemon cleans a page (default 5). */
  barrierIdle?: number;
  /** Opens the members named by URI (remote ones); kept for re-add, add and the return check. */
  opener?: MemberOpener;
}

/** What assembly found besides the members it started with. */
export interface AssemblyReport {
  stale: { name: string; events: string; reason: string }[];
  missingRoles: number[];
  /** The array was not stopped cleanly: a resync (bitmap-guided when there is a bitmap) follows. */
  unclean: boolean;
  /** Why the array resyncs though the freshest superblock says it stopped cleanly. */
  resyncReason?: string;
  /** How the members' copies of the bitmap compared (llbitmap only). */
  bitmap?: BitmapLoadReport;
}

function sameRoles(a: Superblock, b: Superblock): boolean {
  const n = Math.max(a.devRoles.length, b.devRoles.length);
  for (let i = 0; i < n; i++) if ((a.devRoles[i] ?? ROLE_SPARE) !== (b.devRoles[i] ?? ROLE_SPARE)) return false;
  return true;
}

function parseUuid(u: Uint8Array | string): Buffer {
  if (typeof u !== 'string') return Buffer.from(u);
  const hex = u.replace(/[:-]/g, '');
  if (!/^[0-9a-fA-F]{32}$/.test(hex)) throw new MdError('EINVAL', `expected a UUID of 32 hex digits, found "${u}"`);
  return Buffer.from(hex, 'hex');
}

export async function assembleArray(options: AssembleOptions): Promise<{ array: MdArray; report: AssemblyReport }> {
  if (options.members.length === 0) throw new MdError('EINVAL', 'assemble: expected at least one member');
  // A remote member that does not answer (its node reboots, a partition) is set apart here; only
  // force starts without it, and then the array watches for it (membership.ts, the return check).
  const { opened, unreachable } = await openReachableMembers(options.members, options.opener, true);
  if (unreachable.length > 0 && !options.force) {
    await releaseMembers(opened);
    const ms = options.returnIntervalMs ?? DEFAULT_TUNING.returnIntervalMs;
    throw new MdError('ENODEV', `assemble: ${unreachable.map((u) => `member ${u.name} is unreachable (${u.reason})`).join('; ')}; use force to start degraded without ${unreachable.length > 1 ? 'them' : 'it'}: the array then opens ${unreachable.length > 1 ? 'each' : 'it'} again every ${ms} ms and re-adds ${unreachable.length > 1 ? 'each' : 'it'} when it answers`);
  }
  const kept = new Set<OpenedMember>();
  let array: MdArray | undefined;
  try {
    // With force, a member whose superblock cannot be read is left out (and named) instead of
    // stopping the assembly: that is how an array with one damaged member is started degraded.
    const unreadable: { name: string; reason: string }[] = [];
    const usable: OpenedMember[] = [];
    const sbs: Superblock[] = [];
    for (const m of opened) {
      try {
        sbs.push(await readSuperblock(m.device, m.name));
        usable.push(m);
      } catch (err) {
        if (!(err instanceof MdError && err.code === 'EBADMETA')) throw err;
        if (!options.force) throw new MdError('EBADMETA', `${err.message}; use force to assemble without this member`, { cause: err });
        unreadable.push({ name: m.name, reason: `superblock unreadable: ${err.message}` });
      }
    }
    if (usable.length === 0) {
      const why = [...unreadable.map((u) => u.name), ...unreachable.map((u) => `${u.name}: unreachable`)];
      throw new MdError('ENODEV', `assemble: no member has a readable superblock (${why.join(', ')})`);
    }
    const wanted = options.uuid !== undefined ? parseUuid(options.uuid) : (sbs[0] as Superblock).setUuid;
    const foreign = usable.filter((_, i) => !(sbs[i] as Superblock).setUuid.equals(wanted));
    if (foreign.length > 0) {
      throw new MdError('EUUID', foreign.map((m) => `member ${m.name}: belongs to array ${formatUuid((sbs[usable.indexOf(m)] as Superblock).setUuid)}, expected ${formatUuid(wanted)}`).join('; '));
    }
    let freshIdx = 0;
    sbs.forEach((sb, i) => {
      if (sb.events > (sbs[freshIdx] as Superblock).events) freshIdx = i;
    });
    const fresh = sbs[freshIdx] as Superblock;
    const raidDisks = fresh.raidDisks;
    // Members at the same events were written by the same update, so they hold the same roles.
    // If they do not, each was run without the other (split brain): neither copy is "the" array.
    const rivals = usable.filter((_, i) => i !== freshIdx && (sbs[i] as Superblock).events === fresh.events && !sameRoles(sbs[i] as Superblock, fresh));
    if (rivals.length > 0 && !options.force) {
      throw new MdError('ESTALE', `array ${fresh.setName} (${formatUuid(fresh.setUuid)}): members ${[usable[freshIdx]!, ...rivals].map((m) => m.name).join(', ')} have the same events (${fresh.events}) but record different roles: the array was run apart on each (split brain); use force to keep the data of the first member listed (${usable[freshIdx]!.name}) and re-add the others`);
    }
    const report: AssemblyReport = {
      stale: [
        ...unreadable.map((u) => ({ ...u, events: 'unknown' })),
        ...unreachable.map((u) => ({ name: u.name, events: 'unknown', reason: `unreachable, watched until it answers: ${u.reason}` })),
      ],
      missingRoles: [], unclean: fresh.resyncOffset !== RESYNC_NONE,
    };
    const byRole: (Member | undefined)[] = new Array<Member | undefined>(raidDisks).fill(undefined);
    const members: Member[] = [];
    // Freshest first, so that of two members claiming one role the fresher keeps it.
    const order = usable.map((_, i) => i).sort((a, b) => Number((sbs[b] as Superblock).events - (sbs[a] as Superblock).events));
    for (const i of order) {
      const m = usable[i] as OpenedMember;
      const sb = sbs[i] as Superblock;
      const role = fresh.devRoles[sb.devNumber];
      const ownRole = sb.devRoles[sb.devNumber];
      const stale = (reason: string): void => {
        report.stale.push({ name: m.name, events: sb.events.toString(), reason });
      };
      if (rivals.includes(m)) {
        stale(`records different roles than ${usable[freshIdx]!.name} at the same events (run apart: split brain); kept ${usable[freshIdx]!.name}`);
        continue;
      }
      if (role === undefined || role === ROLE_FAULTY) {
        stale(`recorded as failed or removed by the array (events ${sb.events}, array ${fresh.events})`);
        continue;
      }
      const member = new Member(m.name, m.device, sb, m.owned, { writeMostly: m.writeMostly, remote: m.remote });
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
    // A member one event behind whose own superblock says "active" while the freshest says
    // "stopped clean" missed that clean stop: a crash while the stop wrote superblocks, or a copy
    // of the member taken while the array ran. Its data may lack writes that no bitmap copy
    // marks (a copy holds the bitmap of the moment it began), so every written chunk is resynced
    // (the bitmap loads as stale) from the earliest offset any member still owes.
    const missedStop = members.filter((m) => m.state === 'in_sync' && m.sb.events < fresh.events && m.sb.resyncOffset !== RESYNC_NONE && fresh.resyncOffset === RESYNC_NONE);
    const owed = [fresh, ...members.filter((m) => m.state === 'in_sync').map((m) => m.sb)]
      .filter((sb) => sb.resyncOffset !== RESYNC_NONE).map((sb) => Number(sb.resyncOffset) * SECTOR);
    if (missedStop.length > 0) {
      report.unclean = true;
      report.resyncReason = `member${missedStop.length > 1 ? 's' : ''} ${missedStop.map((m) => m.name).join(', ')} missed the clean stop the others recorded (events ${missedStop.map((m) => m.sb.events).join(', ')} of ${fresh.events}, still active): every written chunk is resynced`;
    }
    const resyncFrom = personality.syncSize === 0 || owed.length === 0 ? null : Math.min(...owed, personality.syncSize);
    array = new MdArray({ identity, personality, members, devRoles: fresh.devRoles, events: fresh.events, resyncFrom, tuning: options, opener: options.opener });
    const faultySlots = fresh.devRoles.filter((r) => r === ROLE_FAULTY).length;
    const vacantRoles = raidDisks - fresh.devRoles.filter((r) => r < raidDisks).length;
    const knownHistory = faultySlots <= vacantRoles;
    array.setRoleHistory(Array.from({ length: raidDisks }, (_, r) => (expected.has(r) || knownHistory ? 0 : Infinity)));
    for (const u of unreachable) array.awaitUnopened(u.name, u.reason);
    array.attachBitmap(await loadBitmap(identity.bitmapOffset !== 0 ? 'llbitmap' : 'none', array.bitmapHost, {
      ioSize: array.blockSize, syncSize: personality.syncSize, dataOffsetSectors: fresh.dataOffset,
      bitmapOffsetSectors: identity.bitmapOffset,
      ...(options.barrierIdle === undefined ? {} : { barrierIdle: options.barrierIdle }),
      ...(missedStop.length > 0 ? { stale: true } : {}),
    }));
    if (array.bitmap.loadReport !== undefined) report.bitmap = array.bitmap.loadReport;
    await array.run();
    await releaseMembers(opened.filter((m) => !kept.has(m)));
    return { array, report };
  } catch (err) {
    // The error below says what went wrong; a bitmap that also fails to close says less.
    if (array?.bitmap !== undefined) await array.bitmap.close().catch((e: unknown) => trace('md', 'debug', () => `bitmap close after a failed start: ${describeError(e)}`));
    await releaseMembers(opened);
    throw err;
  }
}
