// nbdkit's pause filter, for tests whose disk must really hang: its control socket takes 'p'
// (pause: requests wait in nbdkit until resumed) and 'r' (resume), and answers each.

import { connect } from 'node:net';

/** Sends one command to the pause filter's control socket `ctl` and waits for its answer. */
export function pauseControl(ctl: string, cmd: 'p' | 'r'): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const s = connect(ctl);
    s.setTimeout(5000, () => s.destroy(new Error(`nbdkit pause control: no answer to ${cmd}`)));
    s.on('connect', () => s.write(cmd));
    s.on('data', () => s.end());
    s.on('close', () => resolve());
    s.on('error', reject);
  });
}
