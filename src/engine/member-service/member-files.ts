// Finding the member files a member service exports: every regular file or block device directly
// in its directories that carries an md superblock, named by its device UUID (as `llraid
// examine` prints it), plus every blank `*.img` file and blank block device (a remote `llraid
// create` writes their superblocks through the service). Every file is also reachable as
// `file:<basename>`, which does not change when a superblock is written.

import { promises as fs, type Stats } from 'node:fs';
import { basename, join } from 'node:path';
import { fileIdOf } from '../../block/file-device.js';
import { formatUuid, readSuperblockFile } from '../../md/index.js';

/** The prefix of the name every member file is also exported under. */
export const FILE_ALIAS = 'file:';

export interface MemberFile {
  /** The name it is listed under: its device UUID, or `file:<basename>` for a blank file. */
  name: string;
  /** The device UUID of its superblock; undefined for a blank file. */
  uuid: string | undefined;
  path: string;
  dir: string;
  basename: string;
  /** What the file is (FileDevice.fileId): one member however it is reached. */
  fileId: string;
  /** One line for NBD_OPT_LIST: the file's name and what its superblock says. */
  description: string;
}

export interface MemberScan {
  /** Every name a member is exported under (its UUID and its `file:` alias) → the member. */
  byName: Map<string, MemberFile>;
  /** Every exported member once, in directory order. */
  members: MemberFile[];
  /** Why files were left out (one device UUID on two files, one basename in two directories). */
  problems: string[];
}

/** Reads every directory once; files that cannot be read are left out, never fatal. */
export async function scanMemberDirs(dirs: readonly string[]): Promise<MemberScan> {
  const found: MemberFile[] = [];
  const seen = new Set<string>();
  const problems: string[] = [];
  for (const dir of dirs) {
    let names: string[];
    try {
      names = (await fs.readdir(dir)).sort();
    } catch (err) {
      problems.push(`${dir}: cannot read the directory: ${(err as Error).message}`);
      continue;
    }
    for (const name of names) {
      if (name.startsWith('.')) continue;
      const path = join(dir, name);
      let st: Stats;
      try {
        st = await fs.stat(path);
      } catch {
        continue; // a dangling link, or gone since readdir
      }
      if (!st.isFile() && !st.isBlockDevice()) continue;
      const fileId = fileIdOf(st);
      if (seen.has(fileId)) continue; // the same file through a second directory or link
      const member = await describeFile(path, dir, st, fileId);
      if (member === undefined) continue;
      seen.add(fileId);
      found.push(member);
    }
  }

  // One device UUID on two files (a copied member): serving either could write the wrong one.
  const byUuid = groupBy(found.filter((m) => m.uuid !== undefined), (m) => m.uuid!);
  const doubled = new Set<MemberFile>();
  for (const [uuid, group] of byUuid) {
    if (group.length < 2) continue;
    problems.push(`device UUID ${uuid} is on ${group.length} files (${group.map((m) => m.path).join(', ')}): none of them is exported`);
    for (const m of group) doubled.add(m);
  }
  const members = found.filter((m) => !doubled.has(m));
  const byName = new Map<string, MemberFile>();
  for (const m of members) if (m.uuid !== undefined) byName.set(m.uuid, m);
  for (const [alias, group] of groupBy(members, (m) => `${FILE_ALIAS}${m.basename}`)) {
    if (group.length > 1) problems.push(`${alias} names ${group.map((m) => m.path).join(' and ')}: reach them by device UUID`);
    else byName.set(alias, group[0]!);
  }
  return { byName, members: members.filter((m) => byName.get(m.name) === m), problems };
}

async function describeFile(path: string, dir: string, st: Stats, fileId: string): Promise<MemberFile | undefined> {
  const base = basename(path);
  const common = { path, dir, basename: base, fileId };
  try {
    const sb = await readSuperblockFile(path);
    const uuid = formatUuid(sb.deviceUuid);
    return { ...common, name: uuid, uuid, description: `${base}: member of array ${JSON.stringify(sb.setName)} (${formatUuid(sb.setUuid)})` };
  } catch {
    // No superblock (or an unreadable one): a blank member, if it is meant to be one.
    if (!st.isBlockDevice() && !base.endsWith('.img')) return undefined;
    return { ...common, name: `${FILE_ALIAS}${base}`, uuid: undefined, description: `${base}: no md superblock yet` };
  }
}

function groupBy<T>(items: readonly T[], key: (item: T) => string): Map<string, T[]> {
  const out = new Map<string, T[]>();
  for (const item of items) {
    const k = key(item);
    const group = out.get(k);
    if (group) group.push(item);
    else out.set(k, [item]);
  }
  return out;
}
