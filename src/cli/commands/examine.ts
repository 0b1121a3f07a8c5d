// `llraid examine`: one member's md superblock and llbitmap, read-only (mdadm --examine and
// --examine-bitmap in one). The bitmap's `bits` and `metadata` texts are printed as Linux does.

import type { Command } from 'commander';
import { examineMemberReport } from '../../md/index.js';
import { formatUuid } from '../../md/index.js';
import { addRemoteOptions, memberOpener, type RemoteOptions } from '../remote-options.js';

const ROLE_SPARE = 0xffff;
const ROLE_FAULTY = 0xfffe;

export function register(program: Command): void {
  addRemoteOptions(program
    .command('examine'))
    .description("print a member's superblock and bitmap without changing anything")
    .argument('<member>', 'member file or block device')
    .option('--json', 'print JSON')
    .action(async (member: string, o: RemoteOptions & { json?: boolean }) => {
      const r = await examineMemberReport(member, memberOpener([member], o));
      const sb = r.superblock;
      if (o.json) {
        process.stdout.write(
          `${JSON.stringify(r, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v instanceof Uint8Array || (v as { type?: string })?.type === 'Buffer' ? formatUuid(Buffer.from(v as Uint8Array)) : v), 2)}\n`,
        );
        return;
      }
      const role = sb.devRoles[sb.devNumber];
      const roleText = role === ROLE_SPARE ? 'spare' : role === ROLE_FAULTY ? 'faulty' : role === undefined ? 'unknown' : `Active device ${role}`;
      const lines = [
        `${r.name}:`,
        `          Magic : a92b4efc`,
        `        Version : 1.2`,
        `     Array UUID : ${formatUuid(sb.setUuid)}`,
        `           Name : ${sb.setName}`,
        `  Creation Time : ${new Date(sb.ctime * 1000).toISOString()}`,
        `     Raid Level : raid${sb.level}`,
        `   Raid Devices : ${sb.raidDisks}`,
        `    Data Offset : ${sb.dataOffset} sectors`,
        `      Used Size : ${sb.size} sectors`,
        ...(sb.chunkSize ? [`     Chunk Size : ${sb.chunkSize / 2}K`] : []),
        `  Bitmap Offset : ${sb.bitmapOffset} sectors`,
        `         Events : ${sb.events}`,
        `   Array State : ${sb.resyncOffset === 0xffff_ffff_ffff_ffffn ? 'clean' : `active (resync from sector ${sb.resyncOffset})`}`,
        `    Device Role : ${roleText}`,
        `    Device UUID : ${formatUuid(sb.deviceUuid)}`,
      ];
      if (r.bitmap) {
        const b = r.bitmap;
        lines.push(
          '',
          'llbitmap:',
          `        Version : ${b.superblock.version}`,
          `         Events : ${b.superblock.events}`,
          `      Sync Size : ${b.superblock.syncSize} sectors`,
          `  Reserved Size : ${b.superblock.sectorsReserved} sectors`,
          `          State : 0x${b.superblock.state.toString(16)}`,
          'metadata:',
          ...b.metadata.trimEnd().split('\n').map((l) => `  ${l}`),
          'bits:',
          ...b.bits.trimEnd().split('\n').map((l) => `  ${l}`),
        );
        if (b.corrupt > 0) lines.push(`  corrupt ${b.corrupt}`);
      } else lines.push('', r.bitmapNote === null ? 'llbitmap: none' : `llbitmap: not kept on this member (${r.bitmapNote})`);
      process.stdout.write(`${lines.join('\n')}\n`);
    });
}
