// `llraid status`: the state of an array — live from the engine serving it (--control), or read
// from its members without changing them (each member's superblock and bitmap, the freshest one
// speaking for the array).

import type { Command } from 'commander';
import { addRemoteOptions, memberOpener, type RemoteOptions } from '../remote-options.js';
import { examineMemberReport, freshestReport, memberStanding, type MemberReport } from '../../md/index.js';
import { formatUuid } from '../../md/index.js';
import { levelName } from '../../md/index.js';
import { controlRequest } from '../../engine/control/client.js';
import { checkTarget } from '../array-target.js';
import { formatArrayStatus, formatLease } from '../status-format.js';
import { formatBytes } from '../../units/byte-sizes.js';

export function register(program: Command): void {
  addRemoteOptions(program
    .command('status'))
    .description('show an array: live from its engine (--control), or read-only from its members')
    .argument('[members...]', 'member files or block devices')
    .option('--control <socket>', 'control socket of the engine serving the array')
    .option('--json', 'print JSON')
    .action(async (members: string[], o: RemoteOptions & { control?: string; json?: boolean }) => {
      checkTarget(members, o);
      if (o.control !== undefined) {
        const { status, io, lease } = await controlRequest(o.control, { op: 'status' });
        process.stdout.write(o.json
          ? `${JSON.stringify({ ...status, ...(io ? { io } : {}), ...(lease ? { lease } : {}) }, null, 2)}\n`
          : formatArrayStatus(status!) + (lease ? `${formatLease(lease)}\n` : ''));
        return;
      }
      const opener = memberOpener(members, o);
      const reports = await Promise.all(members.map((m) => examineMemberReport(m, opener)));
      process.stdout.write(o.json ? `${JSON.stringify(offlineJson(reports), null, 2)}\n` : formatOffline(reports));
    });
}

function offlineJson(reports: MemberReport[]): unknown {
  const top = freshestReport(reports);
  const sb = top.superblock;
  return {
    name: sb.setName,
    uuid: formatUuid(sb.setUuid),
    level: levelName(sb.level),
    raidDisks: sb.raidDisks,
    memberSize: sb.size * 512,
    events: sb.events.toString(),
    clean: sb.resyncOffset === 0xffff_ffff_ffff_ffffn,
    members: reports.map((r) => {
      const { role, standing, why } = memberStanding(r, sb);
      return {
        name: r.name,
        uuid: formatUuid(r.superblock.setUuid),
        events: r.superblock.events.toString(),
        role,
        state: standing,
        stale: standing === 'stale',
        reason: why,
      };
    }),
    bitmap: top.bitmap && { chunkSize: top.bitmap.chunkSize, chunks: top.bitmap.chunks, counts: top.bitmap.counts, corrupt: top.bitmap.corrupt },
  };
}

function formatOffline(reports: MemberReport[]): string {
  const top = freshestReport(reports);
  const sb = top.superblock;
  const clean = sb.resyncOffset === 0xffff_ffff_ffff_ffffn;
  const lines = [
    `${sb.setName}: ${levelName(sb.level)}, not running, ${clean ? 'stopped cleanly' : 'NOT stopped cleanly: assembly will resync what the bitmap marks'}`,
    `  uuid ${formatUuid(sb.setUuid)}  events ${sb.events}  raid devices ${sb.raidDisks}  ${formatBytes(sb.size * 512)} per member`,
  ];
  const rows = reports.map((r) => ({ r, ...memberStanding(r, sb) }));
  // In role order, as the running array's table: roles first, then spares, faulty, the rest.
  const rank = (x: (typeof rows)[number]): number => x.role ?? sb.raidDisks + ['spare', 'faulty', 'other_array'].indexOf(x.standing);
  for (const { r, role, standing, why } of [...rows].sort((a, b) => rank(a) - rank(b))) {
    lines.push(
      `  ${(role === null ? '-' : `role ${role}`).padEnd(7)} ${standing.padEnd(10)} events ${String(r.superblock.events).padEnd(6)} ${r.name}` +
        (why === null ? '' : `  (${why})`),
    );
  }
  if (top.bitmap) {
    lines.push(`  bitmap: llbitmap, ${top.bitmap.chunks} chunks of ${formatBytes(top.bitmap.chunkSize)} (from ${top.name})`);
    lines.push(...top.bitmap.bits.trimEnd().split('\n').map((l) => `    ${l}`));
    if (top.bitmap.corrupt > 0) lines.push(`    corrupt state bytes ${top.bitmap.corrupt} (assembly resyncs them)`);
  } else lines.push(top.bitmapNote === null ? '  bitmap: none' : `  bitmap: llbitmap, not read from ${top.name} (${top.bitmapNote})`);
  return `${lines.join('\n')}\n`;
}
