// How a served volume becomes a block device on the node (DESIGN.md §6): the kernel NBD client
// (`kernel`) or nbdfuse + a loop device (`fuse`, for hosts without the nbd module). Both are
// found again after a plugin restart from processes and loop devices, never from a saved state.

import { existsSync } from 'node:fs';

export type AttachMode = 'kernel' | 'fuse';

export interface Attacher {
  readonly mode: AttachMode;
  /** Attaches the NBD export served on `socket`, returning the block device path. */
  attach(volumeId: string, socket: string): Promise<string>;
  /** The block device of the volume's attachment, if one exists. */
  find(volumeId: string, socket: string): Promise<string | undefined>;
  /** Whether the attachment can still reach its engine (the device is usable). */
  connected(volumeId: string, socket: string): Promise<boolean>;
  /**
   * Removes the attachment; does nothing when there is none. `lazy` is for an attachment whose
   * engine is gone: nothing is left to flush to, so it is cut loose instead of drained.
   */
  detach(volumeId: string, socket: string, lazy?: boolean): Promise<void>;
  /**
   * Makes the attached device `bytes` long while it is in use, after its engine grew the export.
   * Absent where the attachment cannot change size live (nbdfuse fixes the file size at connect):
   * such volumes grow while unstaged and come back at their new size on the next stage.
   */
  resize?(device: string, bytes: number): Promise<void>;
}

/** `kernel` when this kernel has the nbd driver (loaded or loadable as /sys/module/nbd), else `fuse`. */
export function detectAttachMode(): AttachMode {
  return existsSync('/sys/module/nbd') ? 'kernel' : 'fuse';
}
