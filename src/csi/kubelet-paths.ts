// Confines the paths that Node calls name (staging_target_path, target_path, volume_path) to the
// kubelet's directory. A path is resolved as the kernel walks it — `..` taken against the real
// parent, every symlink followed to its target — and only then compared with the resolved root,
// so neither `..` nor a symlink planted below the root reaches anything outside it. The node
// service then acts on the resolved path, never on the path as given.

import { promises as fs } from 'node:fs';
import path from 'node:path';
import { LlraidError } from '../common/llraid-error.js';
import { invalid } from './errors.js';

/** Linux gives up after 40 symlinks in one lookup (MAXSYMLINKS); so does the resolver. */
const MAX_LINKS = 40;

/** Why a path could not be resolved (a symlink loop, `..` below a directory that does not exist). */
export class UnresolvablePathError extends LlraidError<'EUNRESOLVABLE'> {
  constructor(message: string) {
    super('EUNRESOLVABLE', message);
  }
}

/**
 * The real path of absolute `p`: what it names once every `..` and symlink is resolved. The path
 * need not exist; from the first component that does not, the rest is taken as written (it can
 * hold no symlink), except that `..` there is refused, since the kernel would fail it (ENOENT)
 * and `mkdir -p` would create and then leave the missing directory.
 */
export async function realPath(p: string): Promise<string> {
  // A stack of components still to walk, the next one last; a symlink pushes its target's.
  const pending = p.split('/').reverse();
  // Invariant: while `exists`, `real` is an existing path with no symlink or `..` in it.
  let real = '/';
  let exists = true;
  let links = 0;
  while (pending.length > 0) {
    const c = pending.pop()!;
    if (c === '' || c === '.') continue;
    if (c === '..') {
      if (!exists) throw new UnresolvablePathError(`${p}: .. below ${real}, which does not exist`);
      real = path.dirname(real);
      continue;
    }
    const next = path.join(real, c);
    if (!exists) {
      real = next;
      continue;
    }
    let st;
    try {
      st = await fs.lstat(next);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ENOTDIR') throw err;
      exists = false;
      real = next;
      continue;
    }
    if (st.isSymbolicLink()) {
      if (++links > MAX_LINKS) throw new UnresolvablePathError(`${p}: more than ${MAX_LINKS} symlinks (a loop?)`);
      const target = await fs.readlink(next);
      // A relative target is relative to the link's directory, which `real` still is.
      if (target.startsWith('/')) real = '/';
      pending.push(...target.split('/').reverse());
      continue;
    }
    real = next;
  }
  return real;
}

export class KubeletPaths {
  /** `root`: the kubelet directory, absolute (config.ts checks that). */
  constructor(readonly root: string) {}

  /**
   * The resolved form of `p`, which must lie strictly below the resolved root (the root itself
   * is the kubelet's, never a volume's path); else INVALID_ARGUMENT naming the field, the path,
   * where it leads and the allowed root. `field` names the request field, e.g.
   * "NodeUnpublishVolume: target_path".
   *
   * Between this check and the plugin's use of the path, only someone who can write below the
   * kubelet directory (root on the node) could swap a directory for a symlink; the check keeps
   * a CSI request from reaching outside it, not the node's root user.
   */
  async confine(p: string, field: string): Promise<string> {
    if (!path.isAbsolute(p)) throw invalid(`${field} ${JSON.stringify(p)}: expected an absolute path below the kubelet directory ${this.root}`);
    if (p.includes('\0')) throw invalid(`${field} ${JSON.stringify(p)}: expected a path without NUL bytes`);
    let real: string;
    let root: string;
    try {
      real = await realPath(p);
      root = await realPath(this.root);
    } catch (err) {
      if (err instanceof UnresolvablePathError) throw invalid(`${field} ${err.message}: expected a path below the kubelet directory ${this.root}`);
      throw err;
    }
    // A root that resolves to "/" (a symlink to it) gives the prefix "//", which nothing has:
    // such a root confines by refusing every path, never by allowing every one.
    if (!real.startsWith(`${root}/`)) {
      const via = real === p ? '' : ` resolves to ${real} and`;
      throw invalid(`${field} ${p}${via} is outside the kubelet directory ${this.root}: expected a path below it`);
    }
    return real;
  }
}
