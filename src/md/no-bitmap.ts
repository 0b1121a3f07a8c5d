// NoBitmap: the WriteIntentBitmap of an array created with `bitmap: none`. Nothing is recorded,
// so nothing can be skipped: every sync covers the whole sync space, as md without a bitmap.

import { MdError } from './errors.js';
import type { BitmapCounts, StartSyncResult, WriteIntentBitmap } from './write-intent-bitmap.js';

export class NoBitmap implements WriteIntentBitmap {
  readonly kind = 'none' as const;
  readonly chunkSize = 0;
  daemonSleep = 5;
  barrierIdle = 5;

  startWrite(): undefined {
    return undefined;
  }
  endWrite(): void {}
  async startDiscard(): Promise<void> {}
  endDiscard(): void {}
  unplug(): undefined {
    return undefined;
  }
  unplugNow(): boolean {
    return true;
  }
  skipSyncBlocks(): number {
    return 0;
  }
  /** No chunks: the whole rest of the sync space is one step (the sync thread bounds it). */
  startSync(offset: number): StartSyncResult {
    return { sync: true, length: Number.MAX_SAFE_INTEGER - offset };
  }
  endSync(): void {}
  closeSync(): void {}
  async condEndSync(): Promise<void> {}
  blocksSynced(): boolean {
    return true;
  }
  paritySynced(): void {}
  isUnwritten(): boolean {
    return false;
  }
  startRecovery(): void {}
  proactiveSync(): void {
    throw new MdError('ENOTSUP', 'proactive sync needs a bitmap, the array has none');
  }
  async resize(): Promise<void> {}
  async updateSb(): Promise<void> {}
  wholeAgain(): void {}
  async flush(): Promise<void> {}
  async close(): Promise<void> {}
  counts(): BitmapCounts {
    return { unwritten: 0, clean: 0, dirty: 0, needSync: 0, syncing: 0, needSyncUnwritten: 0, syncingUnwritten: 0, cleanUnwritten: 0 };
  }
  bitsText(): string {
    return 'no bitmap\n';
  }
  metadataText(): string {
    return 'no bitmap\n';
  }
}
