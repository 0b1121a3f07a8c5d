// A volume engine: one served volume from start to stop. It claims its addresses, assembles the
// array from its members (or opens one file), serves it over NBD, takes control requests for an
// array (status, fail, re-add, grow, stop, ...), reports what happens as typed events
// (events.ts), and at the end answers what is in flight and stops the array cleanly (bitmap
// flushed, superblocks clean) or flushes and closes the file. `llraid serve` runs one; the CSI
// driver runs one per staged volume (supervisor.ts).

import type { BlockDevice } from '../block/block-device.js';
import { CountingDevice } from '../block/counting-device.js';
import { FencedError, ShutdownError } from '../block/errors.js';
import { FileDevice } from '../block/file-device.js';
import { checkSocketPath } from '../block/socket-file.js';
import {
  assembleArray, describeBitmapLoad, type ArrayEvent, type ArrayTuning, type AssemblyReport, type MdArray, type MemberOpener,
} from '../md/index.js';
import { NbdServer, type ListenAddress } from '../nbd/index.js';
import { ControlServer } from './control/server.js';
import type { EngineEvent, EventSink } from './events.js';
import { LeaseGate } from './lease-gate.js';

/** What the engine serves: an array assembled from its members, or one file. */
export type EngineSource =
  | { kind: 'array'; members: string[]; force: boolean; tuning: ArrayTuning; daemonSleep?: number }
  | { kind: 'file'; path: string; direct: boolean };

export interface EngineOptions {
  source: EngineSource;
  address: ListenAddress;
  exportName: string;
  readOnly: boolean;
  /** Unix socket for control requests (arrays only). */
  control?: string;
  events: EventSink;
  /** Where diagnostics about misbehaving NBD clients go (default: the nbd trace, LLRAID_TRACE=nbd). */
  log?: (message: string) => void;
  /**
   * Opens the members named by URI (remote ones, `nbds://...`): md keeps it for re-add, add and
   * the return check of a remote member that dropped out. Without it every member is a path.
   */
  opener?: MemberOpener;
  /**
   * Writes are acknowledged only under a lease (lease-gate.ts): this many ms from the start, then
   * as far as each control `lease` request extends it. Without it there is no gate.
   */
  leaseMs?: number;
}

/**
 * Runs the engine until `stop` resolves (with the reason: a signal's name) or a control `stop`
 * request arrives. Rejects, having changed nothing, when an address is taken or the source cannot
 * be opened.
 */
export async function runEngine(options: EngineOptions, stop: Promise<string>): Promise<void> {
  const { source, address, events } = options;
  // The addresses are claimed before any member is opened: a second engine started for the same
  // socket, or a --control naming a member file, fails here having touched nothing.
  if ('socket' in address) await checkSocketPath(address.socket, 'NBD socket (--socket)');
  if (options.control !== undefined) await checkSocketPath(options.control, 'control socket (--control)');
  const server = new NbdServer(options.log === undefined ? {} : { log: options.log });
  const where = await server.listen(address);
  let device: BlockDevice;
  let array: MdArray | undefined;
  try {
    if (source.kind === 'file') {
      device = await FileDevice.open(source.path, { readOnly: options.readOnly, direct: source.direct, exclusive: true });
    } else {
      const assembled = await assembleArray({
        members: source.members, force: source.force, ...source.tuning, ...(options.opener === undefined ? {} : { opener: options.opener }),
      });
      array = assembled.array;
      array.onEvent((e) => {
        const out = engineEventOf(e);
        if (out !== undefined) events(out);
      });
      if (source.daemonSleep !== undefined && array.bitmap.kind === 'llbitmap') array.bitmap.daemonSleep = source.daemonSleep;
      announce(array, assembled.report, events);
      device = array;
    }
  } catch (err) {
    await server.close();
    throw err;
  }

  const gate = options.leaseMs === undefined ? undefined : leaseGate(device, array, options.leaseMs, events);
  const counted = new CountingDevice(gate ?? device);
  let controlStop!: () => void;
  const controlStopped = new Promise<string>((resolve) => (controlStop = () => resolve('control stop')));
  let controlServer: ControlServer | undefined;
  try {
    // A raid5/6 write holds blocks of its own beside its data: counted (writeWeight), they keep an
    // engine's writes in flight to the memory of a mirror's.
    server.setExports([{ name: options.exportName, device: counted, readOnly: options.readOnly, writeWeight: array?.writeWeight }]);
    if (array !== undefined && options.control !== undefined) {
      controlServer = await ControlServer.listen(options.control, {
        array, onStop: controlStop, io: () => counted.counters, events, ...(gate === undefined ? {} : { lease: gate }),
      });
    }
    events({ type: 'serving', exportName: options.exportName, size: device.size, address: where, uri: uri(address, options.exportName) });
  } catch (err) {
    await server.close();
    await device.close();
    throw err;
  }

  const why = await Promise.race([controlStopped, stop]);
  events({ type: 'stopping', why });
  // Held writes fail now, before the NBD server waits for what is in flight: they never run.
  gate?.shut(new ShutdownError(`the engine is stopping (${why})`));
  // A fenced array's members are another engine's: nothing is flushed, and its stop writes nothing.
  const fenced = (): boolean => array?.fenced != null;
  try {
    await server.close();
    await controlServer?.close();
    if (!device.readOnly && !fenced()) await device.flush().catch((err: unknown) => {
      // A control stop has already stopped the array cleanly; there is nothing left to flush.
      if (why !== 'control stop' && !fenced()) throw err;
    });
  } finally {
    await device.close();
    // A snapshot cut being copied is finished: its copies hold their own descriptors of the
    // member files, so the array's stop above (its last bitmap and superblock writes cloned
    // first where the copy did not hold them yet) does not cut it short.
    await controlServer?.cuts.settled();
  }
  events(fenced() ? { type: 'stopped', fenced: true } : { type: 'stopped' });
}

/**
 * The gate in front of `device`, reporting lapses as engine events and shut for good when the
 * array is fenced: a held write must never run once another engine owns the members.
 */
function leaseGate(device: BlockDevice, array: MdArray | undefined, leaseMs: number, events: EventSink): LeaseGate {
  const gate = new LeaseGate(device, { leaseMs, onChange: events });
  const fence = (reason: string): void => gate.shut(new FencedError(`the array is fenced (${reason})`));
  if (array?.fenced != null) fence(array.fenced);
  array?.onEvent((e) => {
    if (e.type === 'fenced') fence(e.reason);
  });
  return gate;
}

/** The engine event for what the array reported, if the engine reports it (sync-ended: announce). */
function engineEventOf(e: ArrayEvent): EngineEvent | undefined {
  switch (e.type) {
    case 'fenced':
    case 'member-failed':
    case 'member-returned':
      return { ...e };
    case 'sync-ended': {
      if (e.summary.mode !== 'recovery') return undefined;
      const s = e.summary;
      return {
        type: 'member-recovered', members: e.members, complete: s.complete, bytesSynced: s.bytesSynced, bytesWritten: s.bytesWritten,
        seconds: s.seconds, ...(s.error === undefined ? {} : { error: s.error }),
      };
    }
  }
}

/** What assembly found, and, once the array's own sync pass (after an unclean stop) ends, how much it covered. */
function announce(array: MdArray, report: AssemblyReport, events: EventSink): void {
  const st = array.status();
  const c = st.bitmap.counts;
  events({
    type: 'assembled',
    level: st.level,
    name: st.name,
    uuid: st.uuid,
    working: st.working,
    raidDisks: st.raidDisks,
    unclean: report.unclean,
    ...(report.resyncReason === undefined ? {} : { resyncReason: report.resyncReason }),
    bitmap: { kind: st.bitmap.kind, markedChunks: c.dirty + c.needSync + c.syncing + c.needSyncUnwritten + c.syncingUnwritten, chunkSize: st.bitmap.chunkSize },
    stale: report.stale.map((s) => ({ name: s.name, reason: s.reason })),
    bitmapCheck: describeBitmapLoad(report.bitmap),
  });
  // The sync pass starts from a microtask after assembly; look for it once the loop turns.
  setImmediate(() => {
    if (array.status().sync === null) return;
    void array.waitSync().then((s) => {
      if (s) events({ type: 'sync-ended', mode: s.mode, complete: s.complete, bytesSynced: s.bytesSynced, bytesSkipped: s.bytesSkipped, mismatches: s.mismatches });
    });
  });
}

function uri(address: ListenAddress, name: string): string {
  const exportPart = encodeURIComponent(name);
  if ('socket' in address) return `nbd+unix:///${exportPart}?socket=${encodeURI(address.socket)}`;
  const host = address.host.includes(':') ? `[${address.host}]` : address.host;
  return `nbd://${host}:${address.port}/${exportPart}`;
}
