// Words the md engine's parts share and none of them owns: what a personality, the bitmap and
// the sync thread all speak of. Apart so that those modules import it, not each other.

/** md level numbers as they appear in the superblock `level` field. */
export type RaidLevel = 0 | 1 | 10 | 4 | 5 | 6;

/** One sync pass kind, as md's `sync_action`. */
export type SyncMode = 'resync' | 'recovery' | 'check' | 'repair';
