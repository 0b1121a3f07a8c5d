// Carries out one control request on an array this process holds. Both the control server (for
// a running engine) and the offline commands (which assemble the array themselves) go through
// here, so a command behaves the same whether the array is served or not.

import { MdError, type MdArray } from '../../md/index.js';
import type { ControlReply, ControlRequest } from './protocol.js';

/** The requests that change membership or size, and so record themselves in the superblocks. */
const CHANGES_SUPERBLOCKS = new Set<ControlRequest['op']>(['fail', 'remove', 're-add', 'add', 'grow']);

export async function executeControl(array: MdArray, req: ControlRequest): Promise<ControlReply & { ok: true }> {
  // A change the superblocks could not record is refused before it is made: the array's state
  // changes first and its superblocks follow, so a refusal half-way would leave the change to be
  // recorded by the next update (the clean stop) after the command reported it failed.
  if (CHANGES_SUPERBLOCKS.has(req.op)) array.checkChangeRecordable();
  switch (req.op) {
    case 'status':
      return { ok: true, status: array.status() };
    case 'fail':
      await array.fail(req.member);
      return { ok: true, status: array.status() };
    case 'remove':
      await array.remove(req.member);
      return { ok: true, status: array.status() };
    case 're-add':
      return { ok: true, recovery: await array.reAdd(req.member), status: array.status() };
    case 'add':
      await array.add(req.member);
      return { ok: true, status: array.status() };
    case 'sync': {
      // A pass already running (e.g. the resync after an unclean stop) finishes first.
      await array.waitSync();
      array.startSync(req.mode);
      const summary = (await array.waitSync()) ?? null;
      return { ok: true, summary, status: array.status() };
    }
    case 'proactive-sync': {
      await array.waitSync();
      array.proactiveSync();
      const summary = (await array.waitSync()) ?? null;
      return { ok: true, summary, status: array.status() };
    }
    case 'grow':
      await array.grow(req.memberBytes);
      return { ok: true, status: array.status() };
    case 'stop-sync':
      await array.stopSync();
      return { ok: true, status: array.status() };
    case 'stop':
      await array.stop();
      return { ok: true };
    case 'freeze':
    case 'thaw':
    case 'cut':
    case 'cut-status':
    case 'cut-abort':
      // A served array's control server answers these itself (freeze.ts, cut.ts): a pause or a
      // cut only means something while something else could write.
      throw new MdError('EINVAL', `${req.op}: only a served array (llraid serve --control) can be frozen or cut`);
    case 'lease':
      // An engine with a lease answers this itself (control/server.ts); here there is none.
      throw new MdError('EINVAL', 'lease: this array is not served with a lease (llraid serve --lease-ms)');
  }
}
