// The options every command that opens members takes for members on other nodes: the attach
// epoch and the TLS files (DESIGN.md §8). One declaration, one parse, one opener, so `create`,
// `assemble`, `serve` and the offline commands read a remote member the same way.

import type { Command } from 'commander';
import type { MemberOpener } from '../md/index.js';
import { remoteMemberOpener, isRemoteMemberName } from '../engine/remote-members.js';
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
    .option('--epoch <n>', 'attach epoch presented to the member services of nbds:// members (a 64-bit number that only grows; a service refuses a lower one than it accepted)')
    .option('--tls-cert <file>', 'this engine\'s client certificate (PEM) for nbds:// members')
    .option('--tls-key <file>', 'the key of --tls-cert')
    .option('--tls-ca <file>', 'the CA that signed the member services\' certificates')
    .option('--member-timeout <seconds>', 'a request to an nbds:// (or nbd+unix://) member not answered within this fails the member (a partitioned link gives silence, not a reset; default 30)');
}

/**
 * The opener for `members` under `o`, or undefined when every member is a path (and then no
 * remote option may be given: a flag that would do nothing is a mistake worth saying).
 */
export function memberOpener(members: readonly string[], o: RemoteOptions): MemberOpener | undefined {
  const tlsGiven = [o.tlsCert, o.tlsKey, o.tlsCa].filter((x) => x !== undefined).length;
  if (tlsGiven !== 0 && tlsGiven !== 3) throw new UsageError('--tls-cert, --tls-key and --tls-ca go together');
  if (!members.some(isRemoteMemberName)) {
    if (o.epoch !== undefined || tlsGiven > 0) throw new UsageError('--epoch and --tls-* are for members given as nbds:// (or nbd+unix://) URIs; every member here is a path');
    return undefined;
  }
  return remoteMemberOpener({
    ...(o.epoch === undefined ? {} : { epoch: parseEpoch(o.epoch) }),
    ...(tlsGiven === 3 ? { tls: { cert: o.tlsCert!, key: o.tlsKey!, ca: o.tlsCa! } } : {}),
    ...(o.memberTimeout === undefined ? {} : { timeoutMs: parseSeconds(o.memberTimeout, '--member-timeout') }),
  });
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
