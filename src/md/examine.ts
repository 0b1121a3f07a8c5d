// Reading one member's md superblock without assembling anything (mdadm --examine): the CLI's
// `examine` prints it together with the member's bitmap.

import { openMember, releaseMembers, type MemberOpener, type MemberSpec } from './member-source.js';
import { readSuperblock, type Superblock } from './superblock.js';

export async function examineMember(spec: MemberSpec, opener?: MemberOpener): Promise<Superblock> {
  const m = await openMember(spec, true, opener);
  try {
    return await readSuperblock(m.device, m.name);
  } finally {
    await releaseMembers([m]);
  }
}
