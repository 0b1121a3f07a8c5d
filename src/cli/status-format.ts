// Human-readable text for array and member status: an /proc/mdstat-like summary, the member
// table, sync progress, and the bitmap's `bits` text as Linux prints it.

import type { ArrayStatus, MemberStatus, SyncSummary } from '../md/index.js';
import { formatBytes } from '../units/byte-sizes.js';
import type { LeaseStatus } from '../engine/lease-gate.js';

export function formatArrayStatus(s: ArrayStatus): string {
  const roles = Array.from({ length: s.raidDisks }, (_, r) =>
    s.members.some((m) => m.role === r && m.state === 'in_sync') ? 'U' : '_',
  ).join('');
  // `degraded` adds to the state only where the state does not say it already (a failed array is
  // worse than degraded).
  const degraded = s.degraded && s.state !== 'degraded' && s.state !== 'failed' ? ', degraded' : '';
  const lines = [
    `${s.name}: ${s.level} ${formatBytes(s.size)} (${s.size} bytes), state ${s.state}${degraded}`,
    `  uuid ${s.uuid}  events ${s.events}  [${s.raidDisks}/${s.working}] [${roles}]` +
      (s.chunkSize ? `  chunk ${formatBytes(s.chunkSize)}` : ''),
    ...(s.fenced === null ? [] : [`  fenced: no write is acknowledged or written any more (${s.fenced}); stop the engine`]),
  ];
  // Members in role order; then spares and faulty members, which hold no role (mdadm --detail's
  // RaidDevice "-"): the state column says which.
  const rank = (m: MemberStatus): number => m.role ?? s.raidDisks + (m.state === 'spare' ? 0 : 1);
  for (const m of [...s.members].sort((a, b) => rank(a) - rank(b))) {
    const r = m.recovery;
    const notes = [
      ...(m.remote ? ['remote'] : []),
      ...(m.writeMostly ? ['write-mostly'] : []),
      ...(r !== null
        ? [`${r.kind === 'bitmap' ? 'bitmap-guided ' : ''}recovery ${formatBytes(r.bytesDone)} of ${formatBytes(r.bytesToCopy)} copied, throttled to ${formatBytes(r.speedMinKiBs * 1024)}/s..${formatBytes(r.speedMaxKiBs * 1024)}/s`]
        : m.state === 'rebuilding' ? [`recovered ${formatBytes(m.recoveryOffset)}`] : []),
      ...(m.awaited ? ['waiting for it to come back'] : []),
      ...(m.state === 'faulty' && m.failure !== null ? [m.failure] : []),
      ...(m.errors > 0 ? [`${m.errors} I/O error${m.errors === 1 ? '' : 's'}`] : []),
    ];
    lines.push(`  ${(m.role === null ? '-' : `role ${m.role}`).padEnd(7)} ${m.state.padEnd(10)} ${m.name}${notes.length > 0 ? `  (${notes.join('; ')})` : ''}`);
  }
  for (const r of s.missingRoles) lines.push(`  role ${r}  missing`);
  if (s.sync) {
    const p = s.sync;
    const eta = p.etaSeconds === null ? '' : `, finish in ${p.etaSeconds.toFixed(0)} s`;
    // md's percent is the position's; the bytes copied of those marked say how much is left.
    lines.push(
      `  ${p.mode}: ${p.percent.toFixed(1)}% (${formatBytes(p.position)} of ${formatBytes(p.size)}), ` +
        `${formatBytes(p.bytesSynced)} of ${formatBytes(p.targetBytes)} marked copied at ${formatBytes(p.speedKiBs * 1024)}/s${eta}`,
    );
  } else if (s.resyncPending !== null) {
    lines.push(`  resync pending from ${formatBytes(s.resyncPending)}`);
  }
  if (s.lastSync) lines.push(`  last sync: ${formatSyncSummary(s.lastSync)}`);
  if (s.mismatchCount > 0) lines.push(`  mismatch_cnt ${s.mismatchCount}`);
  lines.push(`  bitmap: ${s.bitmap.kind}${s.bitmap.kind === 'none' ? '' : `, chunk ${formatBytes(s.bitmap.chunkSize)}`}`);
  if (s.bitmap.kind !== 'none') {
    const c = s.bitmap.counts;
    lines.push(
      `    unwritten ${c.unwritten}  clean ${c.clean}  dirty ${c.dirty}  need sync ${c.needSync}  syncing ${c.syncing}` +
        (c.needSyncUnwritten + c.syncingUnwritten + c.cleanUnwritten > 0
          ? `  need sync unwritten ${c.needSyncUnwritten}  syncing unwritten ${c.syncingUnwritten}  clean unwritten ${c.cleanUnwritten}`
          : ''),
    );
  }
  return `${lines.join('\n')}\n`;
}

/** The engine's lease (serve --lease-ms), as one indented line below the array's status. */
export function formatLease(l: LeaseStatus): string {
  const held = l.held === 0 ? '' : `; ${l.held} request${l.held === 1 ? '' : 's'} held (${formatBytes(l.heldBytes)} of writes not yet run)`;
  return l.validForMs > 0
    ? `  lease: valid for ${(l.validForMs / 1000).toFixed(1)} s${held}`
    : `  lease: LAPSED, writes are held until it is extended${held}`;
}

export function formatSyncSummary(s: SyncSummary): string {
  return (
    `${s.mode} ${s.complete ? 'complete' : 'stopped'}: ${formatBytes(s.bytesSynced)} synced, ` +
    `${formatBytes(s.bytesSkipped)} skipped by the bitmap, ` +
    (s.bytesBridged > 0 ? `${formatBytes(s.bytesBridged)} read between marked chunks, ` : '') +
    `${formatBytes(s.bytesWritten)} written, ` +
    `${s.mismatches} mismatched sectors, ${s.seconds.toFixed(2)} s` +
    (s.error ? ` (${s.error})` : '')
  );
}
