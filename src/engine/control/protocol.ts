// The control protocol of an array an engine process holds open (`llraid serve --control SOCK`):
// one JSON request per line, one JSON reply per line, on a unix socket with mode 0600. The
// `llraid` commands (status, fail, re-add, grow, ...) and the CSI node plugin reach a served
// array this way, as mdadm reaches an array the kernel holds through its ioctls and sysfs.

import type { IoCounters } from '../../block/counting-device.js';
import type { ArrayStatus, SyncMode, SyncSummary } from '../../md/index.js';

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
  /** Stops the array cleanly; the engine exits after replying. */
  | { op: 'stop' };

export type ControlReply =
  | {
    ok: true;
    status?: ArrayStatus;
    summary?: SyncSummary | null;
    recovery?: 'bitmap' | 'full';
    /** What clients asked of the served array since the engine started (with every status). */
    io?: IoCounters;
  }
  | { ok: false; error: { code: string; message: string } };
