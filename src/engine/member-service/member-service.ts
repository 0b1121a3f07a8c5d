// The member service (`llraid member-serve`): exports the member files of a node's disk
// directories over NBD to engines on other nodes, each under its device UUID, and fences them by
// attach epoch. It is the NBD server's ExportSource: every option that names a member rescans
// the directories (member-files.ts), and NBD_OPT_GO attaches a member only with an epoch:
//
//   client                                 member service
//   STARTTLS, STRUCTURED_REPLY       ──▶
//   SET_META_CONTEXT uuid            ──▶   accepts `llraid:epoch=<u64>` (REP_META_CONTEXT, ACK)
//     ["llraid:epoch=7"]
//   GO uuid                          ──▶   per member, one at a time:
//                                            epoch < stored  → ERR_POLICY "fenced: ..."
//                                            open the file (exclusive) if no client has it
//                                            epoch > stored  → fence every connection of the
//                                                              member, then store 7 durably
//                                     ◀──    INFO, ACK: the client may write
//
// A member file is opened (FileDevice, exclusive: an engine on this node cannot open it
// meanwhile) when its first client attaches and closed when its last one goes. When an engine on
// this node holds the file (it opened it itself, with an epoch: local-members.ts), a higher epoch
// is stored first — the raised record is what fences that engine — and the client is answered
// only after the engine closed the file and the service opened it (or refused after 10 s).

import { isBlockError } from '../../block/errors.js';
import { FileDevice } from '../../block/file-device.js';
import { describeError } from '../../common/trace.js';
import {
  NbdExport,
  NbdServer,
  type AttachRequest,
  type Attachment,
  type ExportRefusal,
  type ExportSource,
  type ListenAddress,
  type ServedConnection,
  type TlsCredentials,
} from '../../nbd/index.js';
import { EpochStore } from './epoch-store.js';
import { parseEpochContext } from './epoch-context.js';
import type { MemberEventSink } from './events.js';
import { scanMemberDirs, type MemberFile, type MemberScan } from './member-files.js';

/**
 * How long a GO of a higher epoch waits for an engine on this node that holds the member file to
 * notice the raised record (it looks at least every second) and close the file.
 */
const LOCAL_RELEASE_MS = 10_000;
const LOCAL_RETRY_MS = 100;

/** NBD's default largest payload: what every client may assume (protocol.ts DEFAULT_MAX_PAYLOAD). */
const MAX_PAYLOAD = 32 * 1024 * 1024;

/** A member some client has attached: its open device and who holds it with which epoch. */
interface OpenMember {
  device: FileDevice;
  connections: Map<ServedConnection, bigint>;
}

export class MemberService implements ExportSource {
  readonly maxPayload = MAX_PAYLOAD;
  private readonly epochs = new EpochStore();
  /** By fileId: the members clients hold. */
  private readonly open = new Map<string, OpenMember>();
  /** By fileId: the tail of the chain of attaches and detaches of that member (one at a time). */
  private readonly turns = new Map<string, Promise<unknown>>();
  private scanning: Promise<MemberScan> | undefined;
  private lastProblems = '';

  constructor(
    private readonly dirs: readonly string[],
    private readonly events: MemberEventSink,
  ) {}

  async list(): Promise<Array<{ name: string; description: string }>> {
    return (await this.scan()).members.map((m) => ({ name: m.name, description: m.description }));
  }

  async has(name: string): Promise<boolean> {
    return (await this.scan()).byName.has(name);
  }

  acceptsMetaContext(_name: string, query: string): boolean {
    return parseEpochContext(query) !== undefined;
  }

  async inspect(name: string): Promise<Attachment | ExportRefusal> {
    const member = (await this.scan()).byName.get(name);
    if (member === undefined) return unknown(name);
    const held = this.open.get(member.fileId);
    if (held !== undefined) return { export: this.exportOf(name, member, held.device) };
    // A look only: opened without the lock, closed after the reply, nothing written.
    let device: FileDevice;
    try {
      device = await FileDevice.open(member.path);
    } catch (err) {
      return { refused: 'policy', message: `member ${name}: cannot open it: ${describeError(err)}` };
    }
    return { export: this.exportOf(name, member, device), release: () => device.close() };
  }

  async attach(request: AttachRequest): Promise<Attachment | ExportRefusal> {
    const { name, connection } = request;
    const refuse = (message: string): ExportRefusal => {
      this.events({ type: 'refused', name, connection: connection.id, peer: connection.peer, message });
      return { refused: 'policy', message };
    };
    const member = (await this.scan()).byName.get(name);
    if (member === undefined) {
      const r = unknown(name);
      this.events({ type: 'refused', name, connection: connection.id, peer: connection.peer, message: r.message });
      return r;
    }
    const epochs = request.contexts.flatMap((c) => {
      const e = parseEpochContext(c);
      return e === undefined ? [] : [e];
    });
    if (epochs.length !== 1) {
      return refuse(epochs.length === 0
        ? `member ${name}: an epoch is required: select the meta context llraid:epoch=<u64> (NBD_OPT_SET_META_CONTEXT, after structured replies) before NBD_OPT_GO`
        : `member ${name}: expected one llraid:epoch meta context, found ${epochs.length}`);
    }
    const presented = epochs[0]!;
    return this.inTurn(member, async () => {
      let stored: bigint | undefined;
      try {
        stored = await this.epochs.read(member);
      } catch (err) {
        return refuse(`member ${name}: ${describeError(err)}`);
      }
      if (stored !== undefined && presented < stored) {
        return refuse(`fenced: member ${name} has accepted epoch ${stored}; this client presented ${presented}`);
      }
      let held: OpenMember;
      try {
        held = await this.acquire(member);
      } catch (err) {
        if (!isBlockError(err, 'EBUSY') || (stored !== undefined && presented <= stored)) {
          return refuse(`member ${name}: cannot open it: ${describeError(err)}`);
        }
        // Another process holds the file: an engine on this node that opened it itself. Raising
        // the record is what fences it (its EpochWatchDevice), so here the record comes first;
        // this client is answered only once the holder has closed the file and it is ours.
        try {
          await this.epochs.write(member, presented);
        } catch (werr) {
          return refuse(`member ${name}: cannot record epoch ${presented}: ${describeError(werr)}`);
        }
        this.events({ type: 'taking', member: name, path: member.path, holder: describeError(err), by: `${presented}` });
        const got = await this.acquireWhenReleased(member);
        if (!('held' in got)) {
          return refuse(`member ${name}: ${got.busy.replace(/; stop it first$/, '')}, which did not let it go within ${LOCAL_RELEASE_MS / 1000} s of epoch ${presented} being recorded ` +
            '(it is fenced once it notices; try again)');
        }
        held = got.held;
      }
      // Read again now that the file is ours: an engine here may have raised it since.
      let now: bigint | undefined;
      try {
        now = await this.epochs.read(member);
      } catch (err) {
        await this.dropIfUnused(member, held);
        return refuse(`member ${name}: ${describeError(err)}`);
      }
      if (now !== undefined && presented < now) {
        await this.dropIfUnused(member, held);
        return refuse(`fenced: member ${name} has accepted epoch ${now}; this client presented ${presented}`);
      }
      if (now === undefined || presented > now) {
        try {
          // Every connection of the member is of an epoch below this one: none may write after
          // this client is told it holds the member.
          await Promise.all([...held.connections].map(async ([c, epoch]) => {
            await c.fence(`fenced: member ${name} taken with epoch ${presented}`);
            // Settled: nothing of it runs or will; its detach comes when its socket is gone.
            held.connections.delete(c);
            this.events({ type: 'fenced', member: name, path: member.path, connection: c.id, peer: c.peer, epoch: `${epoch}`, by: `${presented}` });
          }));
          await this.epochs.write(member, presented);
        } catch (err) {
          await this.dropIfUnused(member, held);
          return refuse(`member ${name}: cannot record epoch ${presented}: ${describeError(err)}`);
        }
      }
      held.connections.set(connection, presented);
      this.events({ type: 'attached', member: name, path: member.path, epoch: `${presented}`, connection: connection.id, peer: connection.peer });
      return {
        export: this.exportOf(name, member, held.device),
        release: () => this.detach(name, member, held, connection),
      };
    });
  }

  private detach(name: string, member: MemberFile, held: OpenMember, connection: ServedConnection): Promise<void> {
    return this.inTurn(member, async () => {
      held.connections.delete(connection);
      this.events({ type: 'detached', member: name, path: member.path, connection: connection.id, peer: connection.peer });
      await this.dropIfUnused(member, held);
    });
  }

  private async acquire(member: MemberFile): Promise<OpenMember> {
    const held = this.open.get(member.fileId);
    if (held !== undefined) return held;
    const device = await FileDevice.open(member.path, { exclusive: true });
    const fresh = { device, connections: new Map<ServedConnection, bigint>() };
    this.open.set(member.fileId, fresh);
    return fresh;
  }

  /**
   * Opens the member once its holder (another process) has closed it, trying every
   * LOCAL_RETRY_MS for LOCAL_RELEASE_MS; else says who still holds it.
   */
  private async acquireWhenReleased(member: MemberFile): Promise<{ held: OpenMember } | { busy: string }> {
    const deadline = Date.now() + LOCAL_RELEASE_MS;
    for (;;) {
      await new Promise((r) => setTimeout(r, LOCAL_RETRY_MS));
      try {
        return { held: await this.acquire(member) };
      } catch (err) {
        if (!isBlockError(err, 'EBUSY') || Date.now() >= deadline) return { busy: describeError(err) };
      }
    }
  }

  /** Closes the member's file when no connection holds it (in its turn: a reopen waits for the close). */
  private async dropIfUnused(member: MemberFile, held: OpenMember): Promise<void> {
    if (held.connections.size > 0 || this.open.get(member.fileId) !== held) return;
    this.open.delete(member.fileId);
    await held.device.close();
  }

  private exportOf(name: string, member: MemberFile, device: FileDevice): NbdExport {
    return new NbdExport({ name, device, description: member.description, maxPayload: MAX_PAYLOAD });
  }

  /** Runs `fn` after every earlier attach and detach of `member` has finished. */
  private inTurn<T>(member: MemberFile, fn: () => Promise<T>): Promise<T> {
    const before = this.turns.get(member.fileId) ?? Promise.resolve();
    const mine = before.then(fn, fn);
    const tail = mine.catch(() => undefined);
    this.turns.set(member.fileId, tail);
    void tail.then(() => {
      if (this.turns.get(member.fileId) === tail) this.turns.delete(member.fileId);
    });
    return mine;
  }

  /** The directories as they are now; concurrent callers share one scan. */
  private scan(): Promise<MemberScan> {
    this.scanning ??= scanMemberDirs(this.dirs).then((s) => {
      this.scanning = undefined;
      const problems = s.problems.join('\n');
      if (problems !== this.lastProblems) {
        this.lastProblems = problems;
        if (s.problems.length > 0) this.events({ type: 'scan-problems', problems: s.problems });
      }
      return s;
    }, (err: unknown) => {
      this.scanning = undefined;
      throw err;
    });
    return this.scanning;
  }
}

function unknown(name: string): ExportRefusal {
  return { refused: 'unknown', message: `no member named ${JSON.stringify(name)} is served here` };
}

export interface MemberServiceOptions {
  dirs: string[];
  /** TCP, TLS required: where and with which credentials. */
  tcp?: { host: string; port: number; tls: TlsCredentials };
  /** A plain unix socket (mode 0600) for a local engine or tests. */
  socket?: string;
  events: MemberEventSink;
  /** Where diagnostics about clients go (a failed TLS handshake, a broken frame); default: the nbd trace. */
  log?: (message: string) => void;
}

/**
 * Runs a member service until `stop` resolves (with the reason, a signal's name): listens, serves,
 * then stops accepting, lets every connection answer what it has in flight, closes them and
 * their member files.
 */
export async function runMemberService(options: MemberServiceOptions, stop: Promise<string>): Promise<void> {
  const service = new MemberService(options.dirs, options.events);
  const servers: NbdServer[] = [];
  try {
    const addresses: Array<[ListenAddress, TlsCredentials | undefined]> = [];
    if (options.tcp !== undefined) addresses.push([{ host: options.tcp.host, port: options.tcp.port }, options.tcp.tls]);
    if (options.socket !== undefined) addresses.push([{ socket: options.socket }, undefined]);
    for (const [address, tls] of addresses) {
      const server = new NbdServer({ exports: service, ...(tls === undefined ? {} : { tls }), ...(options.log === undefined ? {} : { log: options.log }) });
      servers.push(server);
      const where = await server.listen(address);
      options.events({ type: 'listening', address: where, tls: tls !== undefined });
    }
  } catch (err) {
    await Promise.all(servers.map((s) => s.close()));
    throw err;
  }
  const why = await stop;
  options.events({ type: 'stopping', why });
  await Promise.all(servers.map((s) => s.close()));
  options.events({ type: 'stopped' });
}
