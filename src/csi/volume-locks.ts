// One lock per volume, owned by the driver and shared by the Controller and Node services: the
// CO may retry a call while the first attempt still runs, two concurrent stages of one volume
// must not both start an engine, and an offline ControllerExpandVolume (which assembles the
// members itself) must not run while NodeStageVolume starts the volume's engine. (Member files
// are also locked against a second opener by the OS, exclusive-lock.ts; this lock makes such
// calls wait for each other instead of failing with EBUSY.)

/** Lock keys: a volume by its id, and a name being created (CreateVolume, before it has an id). */
export const volumeKey = (volumeId: string): string => `id:${volumeId}`;
export const nameKey = (name: string): string => `name:${name}`;

export class VolumeLocks {
  private tails = new Map<string, Promise<void>>();

  /** Runs `fn` once every earlier holder of `key` has finished. */
  async with<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.tails.get(key) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    const tail = prev.then(() => mine);
    this.tails.set(key, tail);
    await prev;
    try {
      return await fn();
    } finally {
      release();
      if (this.tails.get(key) === tail) this.tails.delete(key);
    }
  }
}
