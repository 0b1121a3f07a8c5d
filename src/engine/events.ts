// What a volume engine tells the world, as typed events: the interface between an engine and
// whoever watches it (its operator on a terminal, the CSI driver, the tests). Each event goes to
// the engine's sinks: a human line on stdout, and, with `serve --events PATH`, one JSON object
// per line appended to PATH. Programs read the JSON (readEngineEvents), never the human text.

import { appendFileSync } from 'node:fs';
import { readFile } from '../common/callback-fs.js';

/** The array came up: what assembly found. */
export interface AssembledEvent {
  type: 'assembled';
  level: string;
  name: string;
  uuid: string;
  working: number;
  raidDisks: number;
  /** Not stopped cleanly: a resync (bitmap-guided where there is a bitmap) follows. */
  unclean: boolean;
  /** Why the array resyncs though its freshest superblock says it stopped cleanly. */
  resyncReason?: string;
  bitmap: { kind: 'llbitmap' | 'none'; markedChunks: number; chunkSize: number };
  stale: { name: string; reason: string }[];
  /** Bitmap copies left out or disagreeing at assembly (cross-check.ts), as lines. */
  bitmapCheck: string[];
}

/** The export is served and accepts clients. */
export interface ServingEvent {
  type: 'serving';
  exportName: string;
  size: number;
  /** `unix:PATH` or `HOST:PORT`. */
  address: string;
  uri: string;
}

/** A sync pass the array ran by itself (the resync after an unclean stop, a recovery) ended. */
export interface SyncEndedEvent {
  type: 'sync-ended';
  mode: string;
  complete: boolean;
  bytesSynced: number;
  bytesSkipped: number;
  mismatches: number;
}

/**
 * A member's device answered that another engine took it (a higher attach epoch): the array
 * acknowledges nothing from now on and writes nothing; the engine stays up so that status shows
 * it, until it is stopped.
 */
export interface FencedEvent {
  type: 'fenced';
  member: string;
  reason: string;
}

/** md failed a member (an I/O error, a connection lost): the array runs degraded. */
export interface MemberFailedEvent {
  type: 'member-failed';
  member: string;
  reason: string;
  /** A remote member: the array tries to open it again every few seconds and re-adds it when back. */
  watched: boolean;
}

/** A remote member that had dropped out is back and re-added: its recovery starts. */
export interface MemberReturnedEvent {
  type: 'member-returned';
  member: string;
  recovery: 'bitmap' | 'full';
  /** Bytes the recovery expects to copy (bitmap: the chunks written while it was away). */
  bytesToCopy: number;
}

/** A recovery onto members (a re-add, a new member, a spare) ended. */
export interface MemberRecoveredEvent {
  type: 'member-recovered';
  members: string[];
  complete: boolean;
  bytesSynced: number;
  bytesWritten: number;
  seconds: number;
  error?: string;
}

/**
 * The engine's lease (serve --lease-ms) ran out: writes, flushes, discards and zeroings are held,
 * unacknowledged, until the lease is extended (lease-gate.ts); reads go on.
 */
export interface LeaseLapsedEvent {
  type: 'lease-lapsed';
}

/** The lease was extended after a lapse: the requests held meanwhile run and are answered now. */
export interface LeaseRenewedEvent {
  type: 'lease-renewed';
  /** Requests that had been held. */
  released: number;
  /** How long the lease had lapsed. */
  lapsedMs: number;
  validForMs: number;
}

/** A snapshot's pause began (control freeze): new writes wait; the member files are ready to copy. */
export interface FrozenEvent {
  type: 'frozen';
  /** How long draining the requests in flight (and, for a clean copy, writing bitmap and superblocks) took. */
  drainMs: number;
  /** What the members hold: a clean stop's state, or a crash's without torn writes (absent: clean, an older engine's). */
  consistency?: 'clean' | 'crash';
  /** The engine resumes by itself after this, thaw or not. */
  timeoutMs: number;
}

/** The pause ended: by thaw, or by its timeout (the snapshot that asked for it is then given up). */
export interface ThawedEvent {
  type: 'thawed';
  /** How long new writes were held. */
  pausedMs: number;
  timedOut: boolean;
}

/**
 * A snapshot's cut was made (control cut, cut.ts): the copies of the member files hold them as
 * they were at this instant and are filled in the background while writes go on.
 */
export interface CutEvent {
  type: 'cut';
  id: string;
  /** How long new writes were held for it. */
  pausedMs: number;
  members: number;
}

/** A cut's copies are complete (and durable, renamed to their names), or it was given up. */
export interface CutCopiedEvent {
  type: 'cut-copied';
  id: string;
  ok: boolean;
  /** From the cut to the end of the copy. */
  ms: number;
  /** Bytes the copies hold (every member file's size). */
  bytes: number;
  /** The longest a single clone held the engine's thread (a write waiting on it waited as long). */
  longestCloneMs: number;
  error?: string;
}

export interface StoppingEvent {
  type: 'stopping';
  why: string;
}

/** The export is closed and the device released (for an array: stopped clean). */
export interface StoppedEvent {
  type: 'stopped';
  /** The array was fenced: it was released without writing anything (not a clean stop). */
  fenced?: true;
}

export type EngineEvent =
  | AssembledEvent | ServingEvent | SyncEndedEvent | FencedEvent | MemberFailedEvent | MemberReturnedEvent | MemberRecoveredEvent
  | LeaseLapsedEvent | LeaseRenewedEvent | FrozenEvent | ThawedEvent | CutEvent | CutCopiedEvent | StoppingEvent | StoppedEvent;

/** An event with the time it happened (ISO 8601), as written to the JSON file. */
export type TimedEngineEvent = EngineEvent & { time: string };

/** The human line for an event (what `llraid serve` prints). */
export function describeEvent(e: EngineEvent): string[] {
  switch (e.type) {
    case 'assembled':
      return [
        `assembled ${e.level} ${JSON.stringify(e.name)} (${e.uuid}), ${e.working}/${e.raidDisks} members in sync, ` +
          `${e.unclean ? 'unclean' : 'clean'}; bitmap ${e.bitmap.kind}: ${e.bitmap.markedChunks} marked chunks of ${e.bitmap.chunkSize} bytes`,
        ...e.stale.map((s) => `stale member: ${s.name} (${s.reason})`),
        ...(e.resyncReason === undefined ? [] : [`resync: ${e.resyncReason}`]),
        ...e.bitmapCheck,
      ];
    case 'serving':
      return [`serving export ${JSON.stringify(e.exportName)} (${e.size} bytes) on ${e.address} as ${e.uri}`];
    case 'sync-ended':
      return [`${e.mode} ${e.complete ? 'complete' : 'stopped'}: ${e.bytesSynced} bytes synced, ${e.bytesSkipped} skipped, ${e.mismatches} mismatched sectors`];
    case 'fenced':
      return [`fenced: no write is acknowledged any more (${e.reason})`];
    case 'member-failed':
      return [`member ${e.member} failed: ${e.reason}${e.watched ? '; waiting for it to come back' : ''}`];
    case 'member-returned':
      return [`member ${e.member} is back: ${e.recovery === 'bitmap' ? 'bitmap-guided' : 'full'} recovery of ${e.bytesToCopy} bytes`];
    case 'member-recovered':
      return [`recovery of ${e.members.join(', ')} ${e.complete ? 'complete' : 'stopped'}: ${e.bytesSynced} bytes synced, ${e.bytesWritten} written in ${e.seconds.toFixed(1)} s${e.error === undefined ? '' : ` (${e.error})`}`];
    case 'lease-lapsed':
      return ['lease lapsed: writes are held, not acknowledged, until it is extended'];
    case 'lease-renewed':
      return [`lease extended after ${(e.lapsedMs / 1000).toFixed(1)} s lapsed: ${e.released} held request${e.released === 1 ? '' : 's'} go on; valid for ${e.validForMs} ms`];
    case 'frozen':
      return [`frozen for a ${e.consistency === 'crash' ? 'crash-consistent' : 'clean'} snapshot: writes wait (drained in ${e.drainMs} ms; at most ${e.timeoutMs} ms)`];
    case 'thawed':
      return [`thawed${e.timedOut ? ' at the timeout, no thaw came' : ''}: writes were held ${e.pausedMs} ms`];
    case 'cut':
      return [`snapshot ${e.id}: cut across ${e.members} member${e.members === 1 ? '' : 's'} (writes held ${e.pausedMs} ms); copying in the background`];
    case 'cut-copied':
      return [e.ok ? `snapshot ${e.id}: copied, ${e.bytes} bytes in ${e.ms} ms (longest clone ${e.longestCloneMs} ms)` : `snapshot ${e.id}: copy given up after ${e.ms} ms: ${e.error ?? 'unknown cause'}`];
    case 'stopping':
      return [`${e.why}: stopping`];
    case 'stopped':
      return [e.fenced ? 'stopped without writing anything: the array is fenced' : 'stopped cleanly'];
  }
}

export type EventSink = (e: EngineEvent) => void;

/** Prints each event's human lines on `out`. */
export function textSink(out: NodeJS.WritableStream = process.stdout): EventSink {
  return (e) => {
    for (const line of describeEvent(e)) out.write(`${line}\n`);
  };
}

/**
 * Appends each event to `path` as one JSON line, synchronously: an engine killed right after
 * an event leaves it on disk, and the order of lines is the order of events.
 */
export function jsonFileSink(path: string): EventSink {
  return (e) => appendFileSync(path, `${JSON.stringify({ ...e, time: new Date().toISOString() })}\n`, { mode: 0o600 });
}

/** Sends every event to each sink in turn. */
export function fanOut(...sinks: EventSink[]): EventSink {
  return (e) => {
    for (const s of sinks) s(e);
  };
}

/** The events of an engine's JSON file, oldest first; none when the file does not exist. */
export async function readEngineEvents(path: string): Promise<TimedEngineEvent[]> {
  const text = await readFile(path, 'utf8').catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return '';
    throw err;
  });
  // A line cut short by a crash mid-write is not an event.
  return text.split('\n').filter((l) => l.trim() !== '').flatMap((l) => {
    try {
      return [JSON.parse(l) as TimedEngineEvent];
    } catch {
      return [];
    }
  });
}

/** The events of the latest run of the engine (from its last `assembled` or `serving` start). */
export function latestRun(events: readonly TimedEngineEvent[]): TimedEngineEvent[] {
  let start = 0;
  events.forEach((e, i) => {
    if (e.type === 'assembled' || (e.type === 'serving' && events[i - 1]?.type !== 'assembled')) start = i;
  });
  return events.slice(start);
}
