// The raid6 personality: raid5's data path with a second syndrome Q = Σ 2^i·D_i over GF(2^8), so
// any two members may be missing. md serves raid4/5/6 from one driver (raid5.c); llraid shares
// ParityPersonality the same way and only the level and member minimum differ.

import { ParityPersonality, type ParityOptions } from './raid5.js';

/** raid6: P and Q per row, at least 4 members. */
export function createRaid6(options: ParityOptions): ParityPersonality {
  return new ParityPersonality(6, options);
}
