// Counts the API requests llraid makes, from the API server's audit log (control-plane.sh writes
// one at level Metadata for the ServiceAccounts of the llraid namespaces, AUDIT_LOG in its env).
//
// A request is counted once, at the time the API server received it (requestReceivedTimestamp),
// whatever stages it was logged at: a watch is logged when its stream opens (ResponseStarted) and
// again when it ends (ResponseComplete), minutes later; counting by auditID and received time
// counts each watch request once, in the window where it was made, and never its duration.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ClusterEnv } from './cluster-env.js';

/** One request as the audit log records it (level Metadata: no bodies). */
export interface AuditedRequest {
  auditID: string;
  /** ms since the epoch, the API server's clock (this machine's). */
  receivedMs: number;
  user: string;
  groups: string[];
  userAgent: string;
  verb: string;
  /** "leases", "raidvolumes.llraid.io", "pods/status": resource[.group][/subresource]. */
  resource: string;
  namespace: string;
  name: string;
  /** HTTP status of the response; undefined while only its start is logged (an open watch). */
  code: number | undefined;
}

interface AuditEvent {
  auditID: string;
  stage: string;
  requestReceivedTimestamp: string;
  verb: string;
  requestURI: string;
  userAgent?: string;
  user: { username: string; groups?: string[] };
  objectRef?: { resource?: string; subresource?: string; apiGroup?: string; namespace?: string; name?: string };
  responseStatus?: { code?: number };
}

/** The audit log of the control plane in `env` (AUDIT_LOG, else the state dir's audit.log). */
export function auditLogPath(env: ClusterEnv): string {
  return process.env.AUDIT_LOG ?? join(env.stateDir, 'audit.log');
}

/** Every request in the log, one entry per auditID (the stages merged), in order received. */
export function readAudit(path: string): AuditedRequest[] {
  const byId = new Map<string, AuditedRequest>();
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    if (!line) continue;
    let e: AuditEvent;
    try {
      e = JSON.parse(line) as AuditEvent;
    } catch {
      continue; // a line the API server is writing right now
    }
    const known = byId.get(e.auditID);
    if (known) {
      known.code ??= e.stage === 'ResponseComplete' ? e.responseStatus?.code : undefined;
      continue;
    }
    const ref = e.objectRef ?? {};
    const resource = ref.resource
      ? `${ref.resource}${ref.apiGroup ? `.${ref.apiGroup}` : ''}${ref.subresource ? `/${ref.subresource}` : ''}`
      : e.requestURI.split('?')[0]!;
    byId.set(e.auditID, {
      auditID: e.auditID,
      receivedMs: Date.parse(e.requestReceivedTimestamp),
      user: e.user.username,
      groups: e.user.groups ?? [],
      userAgent: e.userAgent ?? '',
      verb: e.verb,
      resource,
      namespace: ref.namespace ?? '',
      name: ref.name ?? '',
      code: e.stage === 'ResponseComplete' ? e.responseStatus?.code : undefined,
    });
  }
  return [...byId.values()].sort((a, b) => a.receivedMs - b.receivedMs);
}

export interface RequestCount {
  /** Requests received in [fromMs, toMs). */
  total: number;
  /** total scaled to one minute. */
  perMinute: number;
  windowMs: number;
  /** "verb resource" → count, most first. */
  byVerbResource: [string, number][];
  /** The client's program (user agent up to the first "/") → count, most first. */
  byAgent: [string, number][];
  requests: AuditedRequest[];
}

export interface CountOptions {
  fromMs: number;
  toMs: number;
  /** Only this user, e.g. system:serviceaccount:llraid-system:llraid (default: everyone logged). */
  user?: string;
}

/** Requests received in [fromMs, toMs), each watch once (see the top of the file). */
export function countRequests(path: string, o: CountOptions): RequestCount {
  const requests = readAudit(path).filter((r) => r.receivedMs >= o.fromMs && r.receivedMs < o.toMs && (o.user === undefined || r.user === o.user));
  const tally = (key: (r: AuditedRequest) => string): [string, number][] => {
    const m = new Map<string, number>();
    for (const r of requests) m.set(key(r), (m.get(key(r)) ?? 0) + 1);
    return [...m].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  };
  const windowMs = o.toMs - o.fromMs;
  return {
    total: requests.length,
    perMinute: (requests.length * 60_000) / windowMs,
    windowMs,
    byVerbResource: tally((r) => `${r.verb} ${r.resource}`),
    byAgent: tally((r) => r.userAgent.split('/')[0] || '(none)'),
    requests,
  };
}

/**
 * Counts over a window that starts now and lasts `ms`; waits `settleMs` past its end so that
 * requests received before the end are in the log too (the API server logs a request when its
 * response starts).
 */
export async function measureRequests(path: string, ms: number, o: { user?: string; settleMs?: number } = {}): Promise<RequestCount> {
  const fromMs = Date.now();
  await new Promise((r) => setTimeout(r, ms));
  const toMs = Date.now();
  await new Promise((r) => setTimeout(r, o.settleMs ?? 3000));
  return countRequests(path, { fromMs, toMs, ...(o.user === undefined ? {} : { user: o.user }) });
}

/** A printable breakdown: the rate, then one line per verb and resource, then per client program. */
export function formatCount(title: string, c: RequestCount): string {
  const lines = [`${title}: ${c.total} requests in ${(c.windowMs / 1000).toFixed(0)} s = ${c.perMinute.toFixed(1)}/min`];
  for (const [k, n] of c.byVerbResource) lines.push(`  ${String(n).padStart(5)}  ${k}`);
  lines.push(`  by client: ${c.byAgent.map(([k, n]) => `${k} ${n}`).join(', ')}`);
  return lines.join('\n');
}
