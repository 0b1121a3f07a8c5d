// Choosing the attach mode's implementation: kernel NBD client or nbdfuse + loop (attach.ts
// says what each is). Apart from attach.ts so that the interface does not import its implementations.

import { detectAttachMode, type Attacher, type AttachMode } from './attach.js';
import { FuseAttacher } from './attach-fuse.js';
import { KernelAttacher } from './attach-kernel.js';

/** The attacher for a configured mode (`auto`: kernel when the nbd module exists, else fuse). */
export function createAttacher(mode: AttachMode | 'auto', runDir: string): Attacher {
  const resolved = mode === 'auto' ? detectAttachMode() : mode;
  return resolved === 'kernel' ? new KernelAttacher() : new FuseAttacher(runDir);
}
