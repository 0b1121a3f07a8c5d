// The options every command that opens members takes for fencing and for members on other
// nodes: the attach epoch (presented to member services and checked against the epoch records of
// member files opened here) and the TLS files (DESIGN.md §8). One declaration, one parse, one
// opener, so `create`, `assemble`, `serve` and the offline commands open a member the same way.

import type { Command } from 'commander';
import { isUriName, type MemberOpener } from '../md/index.js';
import { fencedMemberOpener, remoteMemberOpener } from '../engine/remote-members.js';
import { localMemberOpener } from '../engine/local-members.js';
import { UsageError } from './report-error.js';

export interface RemoteOptions {
  epoch?: string;
  tlsCert?: string;
  tlsKey?: string;
  tlsCa?: string;
  memberTimeout?: string;
}

const U64_MAX = (1n << 64n) - 1n;

export function addRemoteOptions(command: Command): Command {
  return command
    .option('--epoch <n>', 'attach epoch of this engine (a 64-bit number that only grows): presented to the member services of nbds:// members, and checked against and recorded in DIR/.llraid-epochs/ for member files opened here; a lower one than a member accepted is refused, and a higher one taken later fences this engine. Without it, member files are not fenced')
    .option('--tls-cert <file>', 'this engine\'s client certificate (PEM) for nbds:// members')
    .option('--tls-key <file>', 'the key of --tls-cert')
    .option('--tls-ca <file>', 'the CA that signed the member services\' certificates')
    .option('--member-timeout <seconds>', 'a request to an nbds:// (or nbd+unix://) member not answered within this fails the member (a partitioned link gives silence, not a reset; default 30)');
}

/**
 * The opener for `members` under `o`, or undefined when every member is a path opened without an
 * epoch (md opens them itself). With `--epoch`, member files are opened by the engine's local
 * opener, fenced by their epoch records (local-members.ts). The TLS options are refused when
 * every member is a path: a flag that would do nothing is a mistake worth saying.
 */
export function memberOpener(members: readonly string[], o: RemoteOptions): MemberOpener | undefined {
  const tlsGiven = [o.tlsCert, o.tlsKey, o.tlsCa].filter((x) => x !== undefined).length;
  if (tlsGiven !== 0 && tlsGiven !== 3) throw new UsageError('--tls-cert, --tls-key and --tls-ca go together');
  const epoch = o.epoch === undefined ? undefined : parseEpoch(o.epoch);
  const local = epoch === undefined ? undefined : localMemberOpener(epoch);
  if (!members.some(isUriName)) {
    if (tlsGiven > 0) throw new UsageError('--tls-* are for members given as nbds:// (or nbd+unix://) URIs; every member here is a path');
    return local;
  }
  const settings = {
    ...(tlsGiven === 3 ? { tls: { cert: o.tlsCert!, key: o.tlsKey!, ca: o.tlsCa! } } : {}),
    ...(o.memberTimeout === undefined ? {} : { timeoutMs: parseSeconds(o.memberTimeout, '--member-timeout') }),
  };
  return epoch === undefined ? remoteMemberOpener(settings) : fencedMemberOpener({ ...settings, epoch });
}

function parseEpoch(text: string): bigint {
  if (!/^\d{1,20}$/.test(text) || BigInt(text) > U64_MAX) throw new UsageError(`--epoch: expected a whole number from 0 to ${U64_MAX}, found ${JSON.stringify(text)}`);
  return BigInt(text);
}

function parseSeconds(text: string, what: string): number {
  const s = Number(text);
  if (!/^\d+(\.\d+)?$/.test(text) || !(s > 0) || s > 86_400) throw new UsageError(`${what}: expected seconds > 0 (at most a day), found ${JSON.stringify(text)}`);
  return Math.round(s * 1000);
}
