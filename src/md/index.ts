// The md engine's public API: what the CLI, the CSI node plugin, the NBD server, the demo and the
// benchmarks use. Everything else in src/md is internal.
//
//   createArray(options) → MdArray            mdadm --create (create.ts: CreateOptions)
//     { name, level: 0|1|10|5|6, members: (path | {name, device})[], chunkSize?, nearCopies?,
//       layout? (raid5/6), assumeClean?, bitmap?: 'llbitmap'|'none', force?, uuid?, daemonSleep?,
//       barrierIdle?, bitmapChunkSize?, syncSpeedMin?, syncSpeedMax?, autoSync?, opener?,
//       returnIntervalMs?, returnTimeoutMs? }
//     Members are laid out as mdadm 1.2: superblock at sector 8, llbitmap at 16, data at 2048.
//     opener (MemberOpener): opens the names it claims (remote members' URIs) and says whether
//     each is write-mostly and remote; the array keeps it for re-add, add and the return check.
//   assembleArray(options) → { array, report }  mdadm --assemble (assemble.ts: AssembleOptions)
//     { members, uuid?, force?, barrierIdle?, syncSpeedMin?, syncSpeedMax?, autoSync?, opener?, ... }
//     report: { stale: [{name, events, reason}], missingRoles, unclean,
//               bitmap?: { members, rejected: [{name, reason}], disagreeing } }  (copies compared)
//     A member named by URI whose opener rejects (not with an MdError nor EFENCED) is unreachable:
//     refused without force (ENODEV naming it); with force left out (in report.stale) and watched
//     by the return check, which re-adds it when it opens (bitmap-guided when its events allow).
//   examineMember(path | device) → Superblock   mdadm --examine (superblock fields, decoded)
//   examineMemberReport(spec) → MemberReport     the same with the bitmap's counts (llraid examine)
//   freshestReport, memberStanding              offline status: each member as assembly sees it
//   readSuperblockFile(path), surveyArray(found) a stopped array from its members' superblocks,
//                                              read-only (the CSI driver's volume list)
//   reidentifyMembers(paths, {uuid, name})     copied members (a snapshot, a clone) get a new set
//                                              uuid and name, new device uuids (member-identity.ts)
//   writtenChunks(path) → {chunkSize, chunks, bits}  chunks the member's llbitmap saw written
//
//   Levels (levels.ts): CREATABLE_LEVELS, minMembers(level), arrayBytes(level, members, chunk,
//   memberData) — exactly the personality's array size —, memberDataFor(level, members, chunk,
//   capacity), MEMBER_DATA_OFFSET, memberFileBytes(memberData); levelName(level).
//
//   Linux md assembles llraid raid1/raid10 members made with bitmap 'none' (kernels without the
//   v6 bitmap refuse llbitmap members), and llraid assembles arrays Linux md created.
//
//   MdArray implements BlockDevice (size, blockSize, read, write {fua}, flush, discard,
//   writeZeroes, extents — Unwritten bitmap chunks are holes — and close = stop), plus:
//     stop()            clean stop: sync checkpointed, bitmap flushed, superblocks clean
//     quiesce(c) → {resume}  I/O held and drained, sync paused; 'clean': bitmap flushed,
//                       superblocks clean (a cleanly stopped array until resume()); 'crash':
//                       nothing written (a crash without torn writes: copies resync Dirty chunks)
//     abandon()         drop without writing anything (as a crash or kill would)
//     fail(name)        mark a member faulty (refused if no complete copy would remain)
//     remove(name)      detach a faulty or spare member
//     reAdd(spec)       bring a former member back; → 'bitmap' (only what changed) | 'full'
//     add(spec)         a new member: fills a vacant role (rebuild written chunks) or a spare
//     startSync(mode)   'check' | 'repair' | 'resync' | 'recovery'; → SyncProgress
//     stopSync(), waitSync() → SyncSummary   stop at a window boundary / wait for the pass
//     status() → ArrayStatus                 plain JSON-ready object: level, state, members,
//                                            bitmap counts, sync progress, events, mismatches,
//                                            a rebuilding member's recovery (bytes done / to copy);
//                                            awaited remote members (a never-opened one: faulty,
//                                            devNumber null)
//     onEvent(listener)  array events (array-events.ts): fenced, member-failed, member-returned,
//                        sync-ended
//     fenced            why the array is fenced (a member answered EFENCED), or null: then every
//                       request rejects with EFENCED and nothing more is written to any member
//     bitmap            the WriteIntentBitmap (bitsText()/metadataText() for status output)
//
// Errors: MdError with a code from MD_ERROR_CODES (EBADMETA, EUUID, ENODEV, EINVAL, EBUSY, ENOSPC,
// ENOTSUP, EEXIST, ...); I/O through the BlockDevice methods rejects with the block layer's errors
// only (md's codes mapped by MD_AS_BLOCK_CODE: EIO when no complete copy is left, ESHUTDOWN after stop).

export { MdArray, type ArrayStatus, type ArrayState, type MemberStatus, type ArrayTuning } from './array/md-array.js';
export { createArray, type CreateOptions } from './create.js';
export { assembleArray, type AssembleOptions, type AssemblyReport } from './assemble.js';
export { examineMember } from './examine.js';
export { examineMemberReport, freshestReport, memberStanding, type MemberReport, type MemberStanding } from './member-report.js';
export { readSuperblockFile, surveyArray, type ArraySurvey, type SurveyedMember } from './array-survey.js';
export {
  arrayBytes, CREATABLE_LEVELS, MEMBER_DATA_OFFSET, memberDataFor, memberFileBytes, minMembers, type CreatableLevel,
} from './levels.js';
export { levelName } from './array-status.js';
export { allocatedRanges, changedRanges, readSnapshotMembers, sharedBytes, type SnapshotMembers } from './snapshot-ranges.js';
export type { BitmapCounts } from './write-intent-bitmap.js';
export type { MemberSpec, MemberOpener, OpenerResult } from './member-source.js';
export { isUriName } from './member-source.js';
export type { ArrayEvent, ArrayEventListener } from './array-events.js';
export type { MemberRecovery } from './array-status.js';
export type { MemberState } from './member.js';
export type { Personality } from './personality.js';
export type { SyncMode, RaidLevel } from './types.js';
export type { SyncProgress, SyncSummary } from './sync-thread.js';
export type { BitmapKind } from './bitmap-setup.js';
export type { BitmapLoadReport } from './write-intent-bitmap.js';
export { describeBitmapLoad } from './llbitmap/cross-check.js';
export { MD_ERROR_CODES, MdError, type MdErrorCode } from './errors.js';
export { DEFAULT_TUNING } from './tuning.js';
export { formatUuid, type Superblock } from './superblock.js';
export { reidentifyMembers, writtenChunks, type NewIdentity, type WrittenChunks } from './member-identity.js';
