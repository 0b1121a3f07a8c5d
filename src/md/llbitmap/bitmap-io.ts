// Bitmap I/O against the members (llbitmap.md A1 "I/O"): reads come from the first bitmap
// member that succeeds, writes go to every bitmap member and are durable before they resolve.
// A member whose bitmap I/O fails is handed to the array (host.failMember) and skipped.

import type { BitmapHost, BitmapMember } from '../write-intent-bitmap.js';
import { MdError } from '../errors.js';

/** Bytes at `offset` from the start of every member's bitmap area. */
export interface BitmapRun {
  offset: number;
  data: Buffer;
}

/**
 * Reads `length` bytes at `offset` of the bitmap area from the first bitmap member that succeeds.
 * B-e: host.bitmapMembers() lists only In_sync members, never one being rebuilt.
 */
export async function readFromFirstMember(
  host: BitmapHost,
  offset: number,
  length: number,
  what: string,
): Promise<{ member: BitmapMember; data: Buffer }> {
  const tried: string[] = [];
  const failed = new Set<BitmapMember>();
  for (;;) {
    const member = host.bitmapMembers().find((m) => !failed.has(m));
    if (!member) {
      throw new MdError(
        'EIO',
        tried.length === 0
          ? `llbitmap: ${what}: expected a bitmap member to read from, found none`
          : `llbitmap: ${what}: read failed on every bitmap member (${tried.join(', ')})`,
      );
    }
    try {
      const data = await member.device.read(member.bitmapOffset + offset, length);
      return { member, data };
    } catch (err) {
      failed.add(member);
      tried.push(member.name);
      host.failMember(member, asError(err));
    }
  }
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

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}
