// Bitmap I/O against the members (llbitmap.md A1 "I/O"): the bitmap is read from every bitmap
// member at load (cross-check.ts compares the copies), writes go to every bitmap member and are
// durable before they resolve. A member whose bitmap I/O fails is handed
// to the array (host.failMember) and skipped.

import type { BitmapHost, BitmapMember } from '../write-intent-bitmap.js';
import { MdError } from '../errors.js';

/** Bytes at `offset` from the start of every member's bitmap area. */
export interface BitmapRun {
  offset: number;
  data: Buffer;
}

/**
 * Reads `length` bytes at `offset` of the bitmap area from every bitmap member; members that fail
 * are failed and left out. Rejects with EIO when none could be read.
 */
export async function readFromEveryMember(
  host: BitmapHost,
  offset: number,
  length: number,
  what: string,
): Promise<{ member: BitmapMember; data: Buffer }[]> {
  const members = host.bitmapMembers();
  if (members.length === 0) throw new MdError('EIO', `llbitmap: ${what}: expected a bitmap member to read from, found none`);
  const reads = await Promise.all(members.map(async (member) => {
    try {
      return { member, data: await member.device.read(member.bitmapOffset + offset, length) };
    } catch (err) {
      host.failMember(member, asError(err));
      return undefined;
    }
  }));
  const ok = reads.filter((r) => r !== undefined);
  if (ok.length === 0) {
    throw new MdError('EIO', `llbitmap: ${what}: read failed on every bitmap member (${members.map((m) => m.name).join(', ')})`);
  }
  return ok;
}

/**
 * Writes `runs` to every bitmap member, durably: one run goes with FUA; several are written and
 * then flushed once (one cache flush instead of one per run). With `preflush` each member's cache
 * is flushed first (md_super_write's REQ_PREFLUSH), so every data write that completed before
 * is durable before a bitmap that calls its chunk clean can be. Resolves with the number of
 * members that hold every run durably; the others were failed.
 */
export async function writeToAllMembers(host: BitmapHost, runs: readonly BitmapRun[], preflush = false): Promise<number> {
  const members = host.bitmapMembers();
  const results = await Promise.all(
    members.map(async (m) => {
      try {
        if (preflush) await m.device.flush();
        // Left the bitmap's members meanwhile (failed, or the array fenced): nothing more to it.
        if (preflush && !host.bitmapMembers().includes(m)) return false;
        if (runs.length === 1) {
          const r = runs[0]!;
          await m.device.write(m.bitmapOffset + r.offset, r.data, { fua: true });
        } else {
          await Promise.all(runs.map((r) => m.device.write(m.bitmapOffset + r.offset, r.data)));
          await m.device.flush();
        }
        return true;
      } catch (err) {
        host.failMember(m, asError(err));
        return false;
      }
    }),
  );
  return results.filter(Boolean).length;
}

/**
 * writeToAllMembers done now, on this thread: true when every bitmap member took every run
 * durably as it returned (BlockDevice.writeNow with FUA). False when one declined (its device
 * would have to wait) or failed (it is failed first): the caller's write-out then writes the
 * runs the ordinary way, to the members left, and a member that took some holds them twice.
 */
export function writeToAllMembersNow(host: BitmapHost, runs: readonly BitmapRun[]): boolean {
  const members = host.bitmapMembers();
  if (members.length === 0 || members.some((m) => m.device.writeNow === undefined)) return false;
  for (const m of members) {
    try {
      if (runs.every((r) => m.device.writeNow!(m.bitmapOffset + r.offset, [r.data], { fua: true }))) continue;
    } catch (err) {
      host.failMember(m, asError(err));
    }
    return false;
  }
  return true;
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}
