// The control protocol of an array an engine process holds open (`llraid serve --control SOCK`):
// one JSON request per line, one JSON reply per line, on a unix socket with mode 0600. The
// `llraid` commands (status, fail, re-add, grow, ...) and the CSI node plugin reach a served
// array this way, as mdadm reaches an array the kernel holds through its ioctls and sysfs.

import type { IoCounters } from '../../block/counting-device.js';
import type { LeaseStatus } from '../lease-gate.js';
import { BLOCK_ERROR_CODES, type BlockErrorCode } from '../../block/errors.js';
import { MD_ERROR_CODES, type ArrayStatus, type MdErrorCode, type SyncMode, type SyncSummary } from '../../md/index.js';

/** What a freeze leaves on the members for the copy: md's clean state, or a crash's (MdArray.quiesce). */
export type FreezeConsistency = 'clean' | 'crash';

export type ControlRequest =
  | { op: 'status' }
  | { op: 'fail'; member: string }
  | { op: 'remove'; member: string }
  | { op: 're-add'; member: string }
  | { op: 'add'; member: string }
  /** Runs a sync pass and replies when it ends. */
  | { op: 'sync'; mode: SyncMode }
  /** Parity levels: builds parity for never-written chunks (llbitmap ProactiveSync); replies when done. */
  | { op: 'proactive-sync' }
  | { op: 'stop-sync' }
  /** mdadm --grow --size: every member's used data size becomes memberBytes ('max': all they have). */
  | { op: 'grow'; memberBytes: number | 'max' }
  /**
   * Sets the engine's lease (serve --lease-ms) to end `ms` from now on its monotonic clock; 0 lapses
   * it at once. Writes past the deadline are held until it is extended (lease-gate.ts).
   */
  | { op: 'lease'; ms: number }
  /**
   * Quiesces the array for a snapshot (freeze.ts): replies once the member files are a cleanly
   * stopped array on disk (`consistency` 'clean', the default) or, with 'crash', as soon as the
   * requests in flight are done (the members are what a crash would leave, less torn writes);
   * I/O waits until `thaw`, or until `timeoutMs` passed (then thaw is refused with ETIMEDOUT).
   * Thaw must come on another connection.
   */
  | { op: 'freeze'; timeoutMs: number; consistency?: FreezeConsistency }
  | { op: 'thaw' }
  /**
   * A snapshot's cut (cut.ts): quiesces as freeze does, starts a copy of each target member file
   * at `<to>.cutting` (a reflink, filled in the background; a write first clones what it would
   * change), resumes, and replies. When every copy is complete and durable each is renamed to
   * `to`; `cut-status` says how far it got. One cut at a time.
   */
  | { op: 'cut'; id: string; timeoutMs: number; consistency?: FreezeConsistency; targets: CutTarget[] }
  | { op: 'cut-status'; id: string }
  /** Gives a cut's copy up (its `.cutting` files removed); nothing to do for a cut that is not being copied. */
  | { op: 'cut-abort'; id: string }
  /** Stops the array cleanly; the engine exits after replying. */
  | { op: 'stop' };

/** A member file to copy at a cut (`member`: its path, as the array names it or any path of the same file) and where. */
export interface CutTarget {
  member: string;
  to: string;
}

/** How a cut's copy goes. */
export interface CutStatus {
  id: string;
  state: 'copying' | 'done' | 'failed';
  copiedBytes: number;
  totalBytes: number;
  /** How long new writes were held for the cut. */
  pausedMs: number;
  /** failed: why. */
  error?: string;
}

export type ControlReply =
  | {
    ok: true;
    status?: ArrayStatus;
    summary?: SyncSummary | null;
    recovery?: 'bitmap' | 'full';
    /** What clients asked of the served array since the engine started (with every status). */
    io?: IoCounters;
    /** The engine's lease, when it was started with one (with every status, and a lease reply). */
    lease?: LeaseStatus;
    /** freeze: how long the quiesce took (drain; bitmap and superblocks when clean). */
    drainMs?: number;
    /** thaw, cut: how long new writes were held, from the start of the freeze. */
    pausedMs?: number;
    /** cut-status: the cut's copy, or null when this engine has no cut of that id (it restarted, or never made it). */
    cut?: CutStatus | null;
  }
  | { ok: false; error: { code: ControlErrorCode; message: string } };

/** The codes only the client gives, when it got no reply of this protocol. */
export const CONTROL_CLIENT_ERROR_CODES = [
  'ECONNREFUSED', // the control socket could not be reached: no engine serves it
  'EPROTO', // the reply was not a reply of this protocol (not JSON, or an unknown code)
] as const;

/**
 * The codes of a refused request (EngineError's): the engine replies with the code of the md or
 * block error it met (EIO for anything else); the client adds its own when no reply came (and
 * EIO for a connection closed before the reply).
 */
export type ControlErrorCode = MdErrorCode | BlockErrorCode | (typeof CONTROL_CLIENT_ERROR_CODES)[number];

export const CONTROL_ERROR_CODES: readonly ControlErrorCode[] = [...new Set([...MD_ERROR_CODES, ...BLOCK_ERROR_CODES, ...CONTROL_CLIENT_ERROR_CODES])];
