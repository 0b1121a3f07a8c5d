// The llbitmap state machine: 8 chunk states, 10 actions, the transition table as data
// (llbitmap.md A3), and the rules that live in code beside it. Pure: the bitmap class
// (llbitmap.ts) feeds it one chunk at a time and carries out the side effects it reports.

/** One byte per chunk, the same value in memory and on disk. */
export const State = {
  Unwritten: 0,
  Clean: 1,
  Dirty: 2,
  NeedSync: 3,
  Syncing: 4,
  NeedSyncUnwritten: 5,
  SyncingUnwritten: 6,
  CleanUnwritten: 7,
} as const;
export type State = (typeof State)[keyof typeof State];

/** "No change": the table's `x`. Never stored in a chunk byte. */
export const NONE = 0xff;
export type Next = State | typeof NONE;

/** Number of valid states; a stored byte at or above this is corrupt. */
export const STATE_COUNT = 8;

export const STATE_NAMES: readonly string[] = [
  'Unwritten',
  'Clean',
  'Dirty',
  'NeedSync',
  'Syncing',
  'NeedSyncUnwritten',
  'SyncingUnwritten',
  'CleanUnwritten',
];

export const Action = {
  Startwrite: 0,
  Startsync: 1,
  Endsync: 2,
  Abortsync: 3,
  Reload: 4,
  Daemon: 5,
  Discard: 6,
  Stale: 7,
  ProactiveSync: 8,
  ClearUnwritten: 9,
} as const;
export type Action = (typeof Action)[keyof typeof Action];

export const ACTION_COUNT = 10;

export const ACTION_NAMES: readonly string[] = [
  'Startwrite',
  'Startsync',
  'Endsync',
  'Abortsync',
  'Reload',
  'Daemon',
  'Discard',
  'Stale',
  'ProactiveSync',
  'ClearUnwritten',
];

const x = NONE;
const { Unwritten, Clean, Dirty, NeedSync, Syncing, NeedSyncUnwritten, SyncingUnwritten, CleanUnwritten } =
  State;

/**
 * TRANSITIONS[from][action]: the new state, or NONE. Rows in State order, columns in Action
 * order: StartWr, StartSync, EndSync, AbortSync, Reload, Daemon, Discard, Stale, ProactSync,
 * ClrUnwr. Exactly llbitmap.md A3; the `* † ‡ §` refinements are in `transition` below.
 */
export const TRANSITIONS: readonly (readonly Next[])[] = [
  /* Unwritten         */ [Dirty, x, x, x, x, x, x, x, NeedSyncUnwritten, x],
  /* Clean             */ [Dirty, x, x, x, x, x, Unwritten, NeedSync, x, x],
  /* Dirty             */ [x, x, x, x, NeedSync, Clean, Unwritten, NeedSync, x, x],
  /* NeedSync          */ [x, Syncing, x, x, x, x, Unwritten, x, x, x],
  /* Syncing           */ [x, Syncing, Dirty, NeedSync, NeedSync, x, Unwritten, NeedSync, x, x],
  /* NeedSyncUnwritten */ [NeedSync, SyncingUnwritten, x, Unwritten, Unwritten, x, Unwritten, Unwritten, x, Unwritten],
  /* SyncingUnwritten  */ [Syncing, SyncingUnwritten, CleanUnwritten, Unwritten, Unwritten, x, Unwritten, Unwritten, x, Unwritten],
  /* CleanUnwritten    */ [Dirty, x, x, x, x, x, Unwritten, Unwritten, x, Unwritten],
];

/**
 * STILL[action][byte] is 1 when `transition(byte, action, ctx)` leaves the byte alone with no side
 * effect for any ctx, except degraded Dirty + Startsync (†), which callers check themselves:
 * a valid state, not owing a sync (§), no table entry. Whole-bitmap actions (Reload, Endsync over
 * every chunk, ...) skip most bytes by this table without building a Transition.
 */
export const STILL: readonly Uint8Array[] = TRANSITIONS[0]!.map((_, action) => {
  const still = new Uint8Array(256);
  for (let b = 0; b < STATE_COUNT; b++) {
    still[b] = b !== NeedSync && b !== NeedSyncUnwritten && TRANSITIONS[b]![action] === NONE ? 1 : 0;
  }
  return still;
});

/** What the array looks like when a transition is applied. */
export interface TransitionContext {
  /** raid4/5/6. */
  parity: boolean;
  degraded: boolean;
}

/** How the chunk's bitmap block must reach disk after the transition. */
export type BlockMark = 'none' | 'dirty' | 'dirty-infect';

export interface Transition {
  /** The new state, or NONE when the byte stays as it is. */
  next: Next;
  /** The byte was not a valid state and was forced to NeedSync. */
  corrupt: boolean;
  /** Wake the sync thread (md_wakeup_thread with MD_RECOVERY_NEEDED). */
  requestSync: boolean;
  /** Arm the daemon timer if it is not armed (new state Dirty). */
  armDaemon: boolean;
  mark: BlockMark;
}

/**
 * Applies `action` to a chunk whose stored byte is `byte` (possibly corrupt).
 * The table decides; these code rules refine it (llbitmap.md A3, 003:L209-225):
 * - `*` parity level, not degraded: Unwritten + Startwrite → NeedSync (lazy initial parity).
 * - degraded: a Startwrite that would end Dirty ends NeedSync; `†` Dirty + Startsync → Syncing,
 *   so a re-added member is given the chunks written while it was away.
 * - a corrupt byte is forced to NeedSync (and resynced).
 * - `§` old state NeedSync/NeedSyncUnwritten requests a sync whatever the action does, so
 *   NeedSync + Reload (no change) still resyncs; new state NeedSync/NeedSyncUnwritten too.
 *   Never while degraded: the sync waits until the array is whole.
 * - `‡` degraded: Daemon changes nothing (the daemon does not even run then).
 */
export function transition(byte: number, action: Action, ctx: TransitionContext): Transition {
  let next: Next;
  let corrupt = false;
  let requestSync = false;
  if (byte >= STATE_COUNT || byte < 0 || !Number.isInteger(byte)) {
    corrupt = true;
    next = NeedSync;
  } else {
    const old = byte as State;
    if (old === NeedSync || old === NeedSyncUnwritten) requestSync = !ctx.degraded;
    next = TRANSITIONS[old]![action]!;
    if (ctx.degraded) {
      // B-d: v1 had no degraded rules; these are the later ones (A5).
      // ‡ Dirty bits are never cleared on a degraded array: they say what a re-add missed.
      if (action === Action.Daemon) next = NONE;
      // New data on a degraded array must reach the missing member: NeedSync, not Dirty.
      if (next === Dirty && action === Action.Startwrite) next = NeedSync;
      // † Dirty chunks were written while the member may have been away: sync them too.
      if (old === Dirty && action === Action.Startsync) next = Syncing;
    } else if (old === Unwritten && next === Dirty && action === Action.Startwrite && ctx.parity) {
      // * Parity was never built for this chunk: it needs the lazy initial recovery first.
      next = NeedSync;
    }
  }
  if (next === NONE) return { next, corrupt, requestSync, armDaemon: false, mark: 'none' };
  if (next === NeedSync || next === NeedSyncUnwritten) requestSync = !ctx.degraded;
  let mark: BlockMark = 'none';
  // Infect (A6) trades extra resync for fewer bitmap writes on the WRITE path, where one block
  // is dirtied again and again before an unplug. Whole-range actions (Reload, Stale, Abortsync)
  // write every block they touch anyway; infecting there would turn Unwritten neighbours into
  // NeedSync on every reload, against E2/E3 (Unwritten stays). No infect while degraded (A5):
  // every extra Dirty/NeedSync would be recovered on re-add.
  if (next === Dirty || next === NeedSync) {
    mark = action === Action.Startwrite && !ctx.degraded ? 'dirty-infect' : 'dirty';
  }
  else if (next === NeedSyncUnwritten) mark = 'dirty';
  else if (next === Syncing && action === Action.Startwrite) {
    // SyncingUnwritten + Startwrite → Syncing: the disk still says NeedSyncUnwritten, which
    // reloads as Unwritten (a hole). A write must never proceed while its chunk reads back as
    // a hole after a crash, so this block is persisted too; Syncing reloads as NeedSync.
    mark = 'dirty';
  }
  return { next, corrupt, requestSync, armDaemon: next === Dirty, mark };
}

/**
 * Infect (A6): what a neighbour in a block being written anyway becomes, or NONE. With
 * `unwritten` false, Unwritten neighbours are left alone (LlBitmap.infectUnwritten).
 */
export function infected(byte: number, parity: boolean, unwritten = true): Next {
  if (byte === Unwritten) return !unwritten ? NONE : parity ? NeedSync : Dirty;
  if (byte === Clean || byte === CleanUnwritten) return Dirty;
  return NONE;
}

/** The only states `infected` changes; it never produces one of them. */
export const INFECTABLE: readonly State[] = [Unwritten, Clean, CleanUnwritten];

/**
 * `infected` as a lookup table over every byte value (NONE where nothing changes), for the
 * write path's scan of a whole block: one table per (parity, unwritten).
 */
export function infectTable(parity: boolean, unwritten: boolean): Uint8Array {
  const key = (parity ? 2 : 0) + (unwritten ? 1 : 0);
  let table = INFECT_TABLES[key];
  if (!table) {
    table = new Uint8Array(256);
    for (let b = 0; b < 256; b++) table[b] = infected(b, parity, unwritten);
    INFECT_TABLES[key] = table;
  }
  return table;
}
const INFECT_TABLES: (Uint8Array | undefined)[] = [];

/** States whose chunk has valid parity on raid4/5/6 (blocks_synced). */
export function isSynced(byte: number): boolean {
  return byte === Clean || byte === Dirty || byte === CleanUnwritten;
}

/** States of a chunk that has never held user data (a hole). */
export function isUnwrittenState(byte: number): boolean {
  return (
    byte === Unwritten || byte === NeedSyncUnwritten || byte === SyncingUnwritten || byte === CleanUnwritten
  );
}

/**
 * The state of one chunk made of several smaller ones, when a grown array's bitmap doubles its
 * chunk size (LlBitmap.resize). Not in the seeds (v1 llbitmap_resize reinterprets the old bytes
 * in place, so one old chunk's state ends up covering two); llraid merges so nothing owed is lost:
 * - all alike: that state (a Syncing state, with no sync running, as its NeedSync form);
 * - any NeedSync, Syncing or corrupt byte: NeedSync;
 * - written (Clean, Dirty) beside never-written (Unwritten and the *Unwritten states): NeedSync,
 *   since the never-written part has no valid copy or parity yet;
 * - only written: Dirty if any is Dirty, else Clean;
 * - only never-written, not alike: Unwritten (parity built ahead of writes is not trusted across
 *   a merge; the chunk is a hole again).
 */
export function mergeStates(states: ArrayLike<number>): State {
  const first = states[0];
  if (first === undefined) return Unwritten;
  let alike = true;
  let owed = false;
  let written = false;
  let dirty = false;
  let hole = false;
  for (let i = 0; i < states.length; i++) {
    const s = states[i]!;
    if (s !== first) alike = false;
    if (s >= STATE_COUNT || s === NeedSync || s === Syncing) owed = true;
    else if (s === Clean || s === Dirty) written = true;
    else hole = true;
    if (s === Dirty) dirty = true;
  }
  if (alike && first < STATE_COUNT) {
    if (first === Syncing) return NeedSync;
    if (first === SyncingUnwritten) return NeedSyncUnwritten;
    return first as State;
  }
  if (owed || (written && hole)) return NeedSync;
  if (written) return dirty ? Dirty : Clean;
  return Unwritten;
}
