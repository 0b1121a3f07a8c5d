// What a member service tells the world, as typed events: a human line each on stderr, and with
// `member-serve --events PATH` one JSON object per line appended to PATH (what programs and the
// tests read). Epochs are u64, carried as decimal strings.

import { appendFileSync } from 'node:fs';

export type MemberServiceEvent =
  /** Accepting clients on `address` (`HOST:PORT` with TLS required, or `unix:PATH`). */
  | { type: 'listening'; address: string; tls: boolean }
  | { type: 'attached'; member: string; path: string; epoch: string; connection: number; peer: string }
  | { type: 'detached'; member: string; path: string; connection: number; peer: string }
  /** A connection of epoch `epoch` was fenced because a client attached with `by`. */
  | { type: 'fenced'; member: string; path: string; connection: number; peer: string; epoch: string; by: string }
  /**
   * A process on this node (`holder`, as the lock's owner is described) holds the member file: epoch
   * `by` was recorded, which fences it if it is an engine with an epoch; the attach waits for it to let go.
   */
  | { type: 'taking'; member: string; path: string; holder: string; by: string }
  | { type: 'refused'; name: string; connection: number; peer: string; message: string }
  /** Files left out of the exports, and why (one line each); said again only when it changes. */
  | { type: 'scan-problems'; problems: string[] }
  | { type: 'stopping'; why: string }
  | { type: 'stopped' };

export type MemberEventSink = (e: MemberServiceEvent) => void;

export function describeMemberEvent(e: MemberServiceEvent): string[] {
  switch (e.type) {
    case 'listening':
      return [`listening on ${e.address}${e.tls ? ' (TLS 1.3 by NBD STARTTLS, client certificates required)' : ' (plain)'}`];
    case 'attached':
      return [`attach ${e.member} (${e.path}) epoch ${e.epoch}: connection ${e.connection} from ${e.peer}`];
    case 'detached':
      return [`detach ${e.member} (${e.path}): connection ${e.connection} from ${e.peer}`];
    case 'fenced':
      return [`fence ${e.member} (${e.path}): connection ${e.connection} from ${e.peer} (epoch ${e.epoch}) closed, the member was taken with epoch ${e.by}`];
    case 'taking':
      return [`take ${e.member} (${e.path}) with epoch ${e.by}: recorded; waiting for the holder to let go (${e.holder})`];
    case 'refused':
      return [`refused ${JSON.stringify(e.name)} to connection ${e.connection} from ${e.peer}: ${e.message}`];
    case 'scan-problems':
      return e.problems.map((p) => `not exported: ${p}`);
    case 'stopping':
      return [`${e.why}: stopping`];
    case 'stopped':
      return ['stopped'];
  }
}

/** Human lines on `out`, each prefixed. */
export function memberTextSink(out: NodeJS.WritableStream, prefix: string): MemberEventSink {
  return (e) => {
    for (const line of describeMemberEvent(e)) out.write(`${prefix}${line}\n`);
  };
}

/** Appends each event to `path` as one JSON line with its time, synchronously (see engine/events.ts). */
export function memberJsonSink(path: string): MemberEventSink {
  return (e) => appendFileSync(path, `${JSON.stringify({ ...e, time: new Date().toISOString() })}\n`, { mode: 0o600 });
}
