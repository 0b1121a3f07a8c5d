// What a running array tells its owner as it happens, as typed data: the engine turns these into
// its own events (engine/events.ts), tests wait on them. md does not log to anyone; it emits.

import type { SyncSummary } from './sync-thread.js';

/** A member fenced the array (its device said another engine took it): nothing is written any more. */
export interface FencedArrayEvent {
  type: 'fenced';
  member: string;
  reason: string;
}

/** A member was failed (an I/O error, a device that said it can no longer be used). */
export interface MemberFailedArrayEvent {
  type: 'member-failed';
  member: string;
  reason: string;
  /** The array watches for it to come back (a remote member) and re-adds it then. */
  watched: boolean;
}

/** A remote member that had dropped out opened again and was re-added: its recovery starts. */
export interface MemberReturnedArrayEvent {
  type: 'member-returned';
  member: string;
  recovery: 'bitmap' | 'full';
  /** Sync-space bytes the recovery expects to copy (the chunks the bitmap marked, or all written). */
  bytesToCopy: number;
}

/** A sync pass ended (any mode; complete or not). */
export interface SyncEndedArrayEvent {
  type: 'sync-ended';
  summary: SyncSummary;
  /** Recovery only: the members it was rebuilding (in sync now when complete). */
  members: string[];
}

export type ArrayEvent = FencedArrayEvent | MemberFailedArrayEvent | MemberReturnedArrayEvent | SyncEndedArrayEvent;

export type ArrayEventListener = (e: ArrayEvent) => void;
