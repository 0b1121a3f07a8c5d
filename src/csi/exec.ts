// Runs the host tools the node service drives (mount, losetup, nbdfuse, nbd-client, mkfs, blkid,
// fallocate). Every failure becomes a CommandError that names the command and quotes its stderr.

import { spawn } from 'node:child_process';
import { CommandError } from './errors.js';

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  /** Exit codes that are answers rather than failures (blkid exits 2 for "nothing found"). */
  okCodes?: number[];
  timeoutMs?: number;
}

/** Runs `cmd args`, resolving with its output; rejects with CommandError on a failing exit. */
export function run(cmd: string, args: string[], options: RunOptions = {}): Promise<RunResult> {
  const okCodes = options.okCodes ?? [0];
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    const timer =
      options.timeoutMs === undefined ? undefined : setTimeout(() => child.kill('SIGKILL'), options.timeoutMs);
    child.on('error', (e) => {
      if (timer) clearTimeout(timer);
      reject(new CommandError(`${cmd}: could not start: ${e.message}`, null, ''));
    });
    child.on('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      const stdout = Buffer.concat(out).toString('utf8');
      const stderr = Buffer.concat(err).toString('utf8');
      const exit = code ?? -1;
      if (okCodes.includes(exit)) resolve({ code: exit, stdout, stderr });
      else {
        const why = signal ? `killed by ${signal}` : `exit ${exit}`;
        reject(new CommandError(`${cmd} ${args.join(' ')}: ${why}: ${stderr.trim().split('\n').slice(-3).join('; ')}`, code, stderr));
      }
    });
  });
}
