// `llraid status`: the state of an array — live from the engine serving it (--control), or read
// from its members without changing them (each member's superblock and bitmap, the freshest one
// speaking for the array).

import type { Command } from 'commander';
import { examineMemberReport, type MemberReport } from '../../md/member-report.js';
import { formatUuid } from '../../md/index.js';
import { controlRequest } from '../../md/control/client.js';
import { checkTarget } from '../array-target.js';
import { formatArrayStatus } from '../status-format.js';
import { formatBytes } from '../sizes.js';

const LEVELS: Record<number, string> = { 0: 'raid0', 1: 'raid1', 4: 'raid4', 5: 'raid5', 6: 'raid6', 10: 'raid10' };

export function register(program: Command): void {
  program
    .command('status')
    .description('show an array: live from its engine (--control), or read-only from its members')
    .argument('[members...]', 'member files or block devices')
    .option('--control <socket>', 'control socket of the engine serving the array')
    .option('--json', 'print JSON')
    .action(async (members: string[], o: { control?: string; json?: boolean }) => {
      checkTarget(members, o);
      if (o.control !== undefined) {
        const { status, io } = await controlRequest(o.control, { op: 'status' });
        process.stdout.write(o.json ? `${JSON.stringify(io ? { ...status, io } : status, null, 2)}\n` : formatArrayStatus(status!));
        return;
      }
      const reports = await Promise.all(members.map((m) => examineMemberReport(m)));
      process.stdout.write(o.json ? `${JSON.stringify(offlineJson(reports), null, 2)}\n` : formatOffline(reports));
    });
}

function freshest(reports: MemberReport[]): MemberReport {
  return reports.reduce((a, b) => (b.superblock.events > a.superblock.events ? b : a));
}

function roleOf(r: MemberReport): number | undefined {
  return r.superblock.devRoles[r.superblock.devNumber];
}

function offlineJson(reports: MemberReport[]): unknown {
  const top = freshest(reports);
  const sb = top.superblock;
  return {
    name: sb.setName,
    uuid: formatUuid(sb.setUuid),
    level: LEVELS[sb.level] ?? `level ${sb.level}`,
    raidDisks: sb.raidDisks,
    memberSize: sb.size * 512,
    events: sb.events.toString(),
    clean: sb.resyncOffset === 0xffff_ffff_ffff_ffffn,
    members: reports.map((r) => ({
      name: r.name,
      uuid: formatUuid(r.superblock.setUuid),
      events: r.superblock.events.toString(),
      role: roleOf(r) ?? null,
      stale: r.superblock.events < sb.events,
    })),
    bitmap: top.bitmap && { chunkSize: top.bitmap.chunkSize, chunks: top.bitmap.chunks, counts: top.bitmap.counts, corrupt: top.bitmap.corrupt },
  };
}

function formatOffline(reports: MemberReport[]): string {
  const top = freshest(reports);
  const sb = top.superblock;
  const clean = sb.resyncOffset === 0xffff_ffff_ffff_ffffn;
  const lines = [
    `${sb.setName}: ${LEVELS[sb.level] ?? `level ${sb.level}`}, not running, ${clean ? 'stopped cleanly' : 'NOT stopped cleanly: assembly will resync what the bitmap marks'}`,
    `  uuid ${formatUuid(sb.setUuid)}  events ${sb.events}  raid devices ${sb.raidDisks}  ${formatBytes(sb.size * 512)} per member`,
  ];
  for (const r of reports) {
    const other = !r.superblock.setUuid.equals(sb.setUuid);
    const role = roleOf(r);
    const roleText = role === undefined ? '?' : role === 0xffff ? 'spare' : role === 0xfffe ? 'faulty' : `role ${role}`;
    lines.push(
      `  ${roleText.padEnd(7)} events ${String(r.superblock.events).padEnd(6)} ${r.name}` +
        (other ? `  (belongs to array ${formatUuid(r.superblock.setUuid)})` : r.superblock.events < sb.events ? '  (stale)' : ''),
    );
  }
  if (top.bitmap) {
    lines.push(`  bitmap: llbitmap, ${top.bitmap.chunks} chunks of ${formatBytes(top.bitmap.chunkSize)} (from ${top.name})`);
    lines.push(...top.bitmap.bits.trimEnd().split('\n').map((l) => `    ${l}`));
    if (top.bitmap.corrupt > 0) lines.push(`    corrupt state bytes ${top.bitmap.corrupt} (assembly resyncs them)`);
  } else lines.push('  bitmap: none');
  return `${lines.join('\n')}\n`;
}
