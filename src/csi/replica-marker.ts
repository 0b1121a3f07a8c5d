// The mark of a member file that belongs to a replicated volume: `<member>.replica` beside it,
// JSON {volume, slot}, written when the file is allocated (by CreateVolume on its node or by the
// member reconciler) and removed with it. It keeps replicated members out of the node-local
// catalog (their volume's record is its RaidVolume, not the superblocks of this node's files)
// and lets the reconciler remove an orphan without ever touching a node-local member: only a
// marked file whose RaidVolume is gone is an orphan. Its mtime is when the file was made.

import { promises as fs } from 'node:fs';

export interface ReplicaMark {
  volume: string;
  slot: number;
}

export function markPath(memberPath: string): string {
  return `${memberPath}.replica`;
}

export async function writeMark(memberPath: string, mark: ReplicaMark): Promise<void> {
  const file = markPath(memberPath);
  await fs.writeFile(`${file}.tmp`, `${JSON.stringify(mark)}\n`, { mode: 0o600 });
  await fs.rename(`${file}.tmp`, file);
}

/** The mark of a member file with its age in ms, or undefined when it has none (or none that reads). */
export async function readMark(memberPath: string, now = Date.now()): Promise<(ReplicaMark & { ageMs: number }) | undefined> {
  try {
    const file = markPath(memberPath);
    const [text, st] = await Promise.all([fs.readFile(file, 'utf8'), fs.stat(file)]);
    const m = JSON.parse(text) as Partial<ReplicaMark>;
    if (typeof m.volume !== 'string' || typeof m.slot !== 'number') return undefined;
    return { volume: m.volume, slot: m.slot, ageMs: now - st.mtimeMs };
  } catch {
    return undefined;
  }
}

export async function isMarked(memberPath: string): Promise<boolean> {
  return fs.access(markPath(memberPath)).then(() => true, () => false);
}
