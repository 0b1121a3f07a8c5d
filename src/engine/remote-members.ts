// Members on other nodes (DESIGN.md §8): the MemberOpener the engine hands md, so that a member
// named by an NBD URI (`nbds://HOST:PORT/UUID`, `nbd+unix:///UUID?socket=PATH`) is attached
// through the NBD client and everything else is opened as a file by md itself. md never learns
// what NBD is; it learns only that the member is remote (keep trying to reopen it when it drops)
// and write-mostly (read it only when no local copy can serve the read).

import { isUriName, MdError, type MemberOpener } from '../md/index.js';
import { NbdClientDevice, isNbdError, parseNbdUri, type TlsFiles } from '../nbd/index.js';
import { chainOpeners, localMemberOpener } from './local-members.js';

/** How this engine reaches remote members: the same for every member of one array. */
export interface RemoteMemberSettings {
  /**
   * The attach epoch presented to every member service (DESIGN.md §8 fencing). Absent: no
   * epoch is presented, which a plain NBD server (nbdkit, qemu-nbd) accepts and an llraid
   * member service refuses.
   */
  epoch?: bigint;
  /** This engine's client certificate, its key and the cluster CA: needed by `nbds` URIs. */
  tls?: TlsFiles;
  /** A request not answered within this fails the member (default: the client's 30 s). */
  timeoutMs?: number;
}

export function remoteMemberOpener(settings: RemoteMemberSettings): MemberOpener {
  return async (name) => {
    if (!isUriName(name)) return undefined;
    // Every URI is this opener's (md's rule: a URI is never a path); one the NBD client cannot
    // read, of another scheme too, is a mistake, never a member that is away: md refuses an
    // MdError from its opener, and watches a member whose open failed any other way.
    try {
      parseNbdUri(name);
    } catch (err) {
      if (isNbdError(err, 'NBD_URI')) throw new MdError('EINVAL', `member ${name}: ${err.message}`, { cause: err });
      throw err;
    }
    const device = await NbdClientDevice.connect({
      uri: name,
      ...(settings.tls === undefined ? {} : { tls: settings.tls }),
      ...(settings.epoch === undefined ? {} : { epoch: settings.epoch }),
      ...(settings.timeoutMs === undefined ? {} : { timeoutMs: settings.timeoutMs }),
    });
    return { device, remote: true, writeMostly: true };
  };
}

/**
 * The opener of an engine (or a create) with an attach epoch: URIs through the NBD client,
 * presenting the epoch to their member services; member files here opened by the engine itself,
 * fenced by their epoch records (local-members.ts). Every member is fenced the same way.
 */
export function fencedMemberOpener(settings: RemoteMemberSettings & { epoch: bigint }): MemberOpener {
  return chainOpeners(remoteMemberOpener(settings), localMemberOpener(settings.epoch));
}
