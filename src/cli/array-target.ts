// Which array a command acts on: a running engine reached through its control socket
// (`--control SOCK`), or the member paths given on the command line, which the command
// assembles itself, acts on, lets any sync it started finish, and stops cleanly again.

import { assembleArray } from '../md/index.js';
import { executeControl } from '../engine/control/execute.js';
import { controlRequest } from '../engine/control/client.js';
import type { ControlReply, ControlRequest } from '../engine/control/protocol.js';
import { UsageError } from './report-error.js';
import { memberOpener, type RemoteOptions } from './remote-options.js';

export interface TargetOptions extends RemoteOptions {
  control?: string;
  force?: boolean;
  /** Print progress of syncs the command waits for (offline only). */
  progress?: (line: string) => void;
}

export function checkTarget(members: string[], options: TargetOptions): void {
  if ((members.length > 0) === (options.control !== undefined)) {
    throw new UsageError('expected either the member paths of the array or --control SOCKET of the engine serving it');
  }
}

export async function request(members: string[], options: TargetOptions, req: ControlRequest): Promise<ControlReply & { ok: true }> {
  checkTarget(members, options);
  if (options.control !== undefined) return controlRequest(options.control, req);
  // The member a re-add or add brings in may be the only remote one.
  const opener = memberOpener('member' in req ? [...members, req.member] : members, options);
  const { array, report } = await assembleArray({ members, force: options.force ?? false, ...(opener !== undefined && { opener }) });
  try {
    for (const s of report.stale) options.progress?.(`stale member ${s.name}: ${s.reason}`);
    if (report.missingRoles.length > 0) options.progress?.(`missing roles: ${report.missingRoles.join(', ')}`);
    const resync = await array.waitSync();
    if (resync) options.progress?.(`${resync.mode} after assembly: ${resync.bytesSynced} bytes synced, ${resync.bytesSkipped} skipped`);
    if (req.op === 'stop') {
      await array.stop();
      return { ok: true, status: array.status() };
    }
    const reply = await executeControl(array, req);
    // A re-add or add starts a recovery: offline, the command sees it through.
    const after = await array.waitSync();
    if (after && req.op !== 'sync' && req.op !== 'proactive-sync') {
      options.progress?.(`${after.mode} ${after.complete ? 'complete' : 'stopped'}: ${after.bytesSynced} bytes synced, ${after.bytesSkipped} skipped`);
    }
    const status = array.status();
    await array.stop();
    return { ...reply, status };
  } catch (err) {
    await array.stop().catch(() => array.abandon());
    throw err;
  }
}
