// libc through koffi (a maintained FFI library with prebuilt binaries), for the few calls Node
// does not expose: preadv2/pwritev2 with RWF_NOWAIT (nowait-io.ts), FS_IOC_FIEMAP
// (file-extents.ts), FICLONERANGE and sync_file_range (file-clone.ts), mallopt (give-back.ts).
// Loaded once, on first use; a process that never needs them never loads it.
//
// koffi's own entry (index.js) only picks the prebuilt binary for the platform and wraps it with
// deprecated aliases, but it also loads the download tooling of koffi's installer, and with it
// node:https, node:http, node:zlib and node:crypto: about 5 MiB of RSS in every engine, which
// loads koffi at start (nowait-io.ts). So the binary is loaded here directly, with the same
// check koffi makes (the binary is the one of the installed package's version). Only glibc
// Linux on x64 and arm64 is supported (the image is Debian's node:20 on one of those).

import { createRequire } from 'node:module';

type Koffi = typeof import('koffi');

export interface Libc {
  koffi: Koffi;
  libc: ReturnType<Koffi['load']>;
}

let loading: Promise<Libc> | undefined;

/** koffi and libc.so.6; rejects when either cannot be loaded (every caller has its own fallback or error). */
export function loadLibc(): Promise<Libc> {
  loading ??= (async () => {
    const koffi = loadKoffi();
    return { koffi, libc: koffi.load('libc.so.6') };
  })();
  return loading;
}

/** koffi's package-relative path of its prebuilt binary for this process's platform. */
export function koffiBinaryPath(platform: string = process.platform, arch: string = process.arch): string {
  if (platform !== 'linux' || (arch !== 'x64' && arch !== 'arm64')) {
    throw new Error(`koffi: llraid loads koffi's prebuilt binary for glibc Linux on x64 or arm64 only, not ${platform} ${arch}`);
  }
  return `koffi/build/koffi/linux_${arch}/koffi.node`;
}

function loadKoffi(): Koffi {
  const require = createRequire(import.meta.url);
  const file = koffiBinaryPath();
  let native: Koffi & { version?: unknown };
  try {
    native = require(file) as Koffi & { version?: unknown };
  } catch (err) {
    throw new Error(`koffi: cannot load its native module ${file} (glibc Linux on x64 or arm64 only): ${(err as Error).message}`, { cause: err });
  }
  const { version } = require('koffi/package.json') as { version: string };
  if (native.version !== version) {
    throw new Error(`koffi: the native module ${file} is version ${String(native.version)}, the package ${version}`);
  }
  return native;
}
