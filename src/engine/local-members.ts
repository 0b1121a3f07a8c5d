// Member files an engine opens itself, fenced by attach epoch like remote ones (DESIGN.md §8):
// with an epoch, the engine's MemberOpener claims every writable path, takes the file
// exclusively, checks the member's epoch record — the one the member service on this node keeps,
// DIR/.llraid-epochs/<basename> — and raises it durably before md writes anything:
//
//   epoch < record  → FencedError "fenced: member PATH has accepted epoch S; this engine presented N"
//   epoch = record  → opened
//   epoch > record  → record := epoch (temp, fsync, rename, fsync dir), then opened
//
// and hands md the file wrapped in an EpochWatchDevice, which fences itself when the record rises
// above the engine's epoch while it runs. Epochs are opt-in per engine: an engine without one
// reads and writes no record and is not fenced (as before epochs existed). md knows nothing of
// this; to it the member is a file.

import { FileDevice } from '../block/file-device.js';
import { FencedError } from '../block/errors.js';
import { isUriName, type MemberOpener } from '../md/index.js';
import { EpochWatchDevice } from './epoch-watch-device.js';
import { EpochStore, recordOwnerOf } from './member-service/epoch-store.js';

/**
 * The opener of member files for an engine of attach epoch `epoch`. Claims every name it is
 * given that is not a URI and is opened writable; a read-only open (examine, status) is left to
 * md: it writes nothing, so there is nothing to fence.
 */
export function localMemberOpener(epoch: bigint, store = new EpochStore()): MemberOpener {
  return async (name, mode) => {
    if (mode.readOnly || isUriName(name)) return undefined;
    // The lock first: from here on no other engine on this node opens the file, so the record
    // can only rise through the member service, which the watch below catches.
    const file = await FileDevice.open(name, { exclusive: true });
    try {
      const owner = recordOwnerOf(name);
      const stored = await store.read(owner);
      if (stored !== undefined && epoch < stored) {
        throw new FencedError(`fenced: member ${name} has accepted epoch ${stored}; this engine presented ${epoch}`);
      }
      if (stored === undefined || epoch > stored) await store.write(owner, epoch);
      const device = new EpochWatchDevice(file, owner, epoch, store);
      await device.start();
      // Raised between the read above and the watch: fenced before md wrote anything.
      if (device.fenced !== undefined) throw device.fenced;
      return { device };
    } catch (err) {
      await file.close().catch(() => undefined);
      throw err;
    }
  };
}

/** Tries each opener in turn; the first that claims the name opens it. */
export function chainOpeners(...openers: MemberOpener[]): MemberOpener {
  return async (name, mode) => {
    for (const open of openers) {
      const r = await open(name, mode);
      if (r !== undefined) return r;
    }
    return undefined;
  };
}
