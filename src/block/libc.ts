// libc through koffi (a maintained FFI library with prebuilt binaries), for the few calls Node
// does not expose: preadv2/pwritev2 with RWF_NOWAIT (nowait-io.ts), FS_IOC_FIEMAP
// (file-extents.ts), FICLONERANGE and sync_file_range (file-clone.ts). Loaded once, on first use; a process that never needs them never loads it.

type Koffi = typeof import('koffi');

export interface Libc {
  koffi: Koffi;
  libc: ReturnType<Koffi['load']>;
}

let loading: Promise<Libc> | undefined;

/** koffi and libc.so.6; rejects when either cannot be loaded (every caller has its own fallback or error). */
export function loadLibc(): Promise<Libc> {
  loading ??= (async () => {
    const koffi: Koffi = (await import('koffi')).default;
    return { koffi, libc: koffi.load('libc.so.6') };
  })();
  return loading;
}
