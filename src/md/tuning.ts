// md's tuning defaults, in one place: Linux md's (drivers/md/md.c sysctl_speed_limit_min and
// _max) and llbitmap's daemon_sleep. The array, the bitmap, the CLI's help and the CSI driver's
// settings all read them from here.

export const DEFAULT_TUNING = {
  /** KiB/s a sync pass keeps even under application I/O (md sync_speed_min). */
  syncSpeedMinKiB: 1000,
  /** KiB/s a sync pass never exceeds (md sync_speed_max). */
  syncSpeedMaxKiB: 200_000,
  /** Seconds a chunk stays Dirty after its last write before the daemon may clean it (llbitmap daemon_sleep). */
  bitmapDaemonSleepSeconds: 30,
  /** ms between attempts to open again a remote member that dropped out (the return check). */
  returnIntervalMs: 5000,
  /** ms one such attempt may take to open the member and read its superblock. */
  returnTimeoutMs: 15_000,
} as const;
