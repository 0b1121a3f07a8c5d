// `llraid member-serve`: exports the member files of this node's disk directories over NBD to
// engines on other nodes (src/engine/member-service/), on TCP with TLS 1.3 and client
// certificates only, and optionally on a plain unix socket, until SIGTERM or SIGINT.

import type { Command } from 'commander';
import { readFileSync } from 'node:fs';
import { runMemberService } from '../../engine/member-service/member-service.js';
import { memberJsonSink, memberTextSink, type MemberEventSink } from '../../engine/member-service/events.js';
import { UsageError } from '../report-error.js';

interface MemberServeOptions {
  listen?: string;
  tlsCert?: string;
  tlsKey?: string;
  tlsCa?: string;
  socket?: string;
  events?: string;
}

const HELP = `
Each member file is exported under its device UUID (the "Device UUID" that \`llraid examine\`
prints), and also as file:<basename>. A file without an md superblock is exported (as
file:<basename> only) when it is a block device or its name ends in .img, so that an engine
elsewhere can create an array on it. A device UUID found on two files exports neither.
The directories are read again whenever a client names or lists a member.

On TCP every client must use NBD STARTTLS (nbds:// URIs) with TLS 1.3 and a certificate signed
by --tls-ca; any other option before TLS is answered NBD_REP_ERR_TLS_REQD.

A client attaches a member (NBD_OPT_GO) only with an attach epoch: the meta context
llraid:epoch=<n> (NBD_OPT_SET_META_CONTEXT). The highest epoch each member accepted is kept in
DIR/.llraid-epochs/<basename>, written durably before the client is answered. A lower epoch is
refused ("fenced: member ... has accepted epoch N; this client presented M"); a higher one first
closes every connection of the member (their outstanding requests fail with ESHUTDOWN).
A member file is opened, exclusively, while at least one client holds it. When an engine on
this node holds the file (opened with --epoch), a higher epoch is recorded first, which fences
that engine; the client is answered once the engine let the file go (refused after 10 s,
naming the holder).

Logs one line per attach, detach, fence and refusal on stderr (and why a client's TLS handshake
failed); --events PATH has them as JSON.`;

export function register(program: Command): void {
  program
    .command('member-serve')
    .description('export the member files of disk directories over NBD (TLS) to engines on other nodes, fenced by attach epoch')
    .argument('<dirs...>', 'directories holding member files (and block device nodes)')
    .option('--listen <host:port>', 'listen on TCP (any address; TLS required, so --tls-cert, --tls-key and --tls-ca are needed)')
    .option('--tls-cert <file>', "this service's certificate (PEM)")
    .option('--tls-key <file>', 'the key of --tls-cert (PEM)')
    .option('--tls-ca <file>', 'the CA (PEM) that signs the certificates of the clients accepted')
    .option('--socket <path>', 'also listen on this unix socket, plain (created with mode 0600; only a stale socket there is replaced)')
    .option('--events <path>', 'also append what happens (listening, attached, detached, fenced, refused, stopped) to PATH as JSON lines')
    .addHelpText('after', HELP)
    .action(async (dirs: string[], options: MemberServeOptions) => {
      if (options.listen === undefined && options.socket === undefined) {
        throw new UsageError('member-serve needs --listen HOST:PORT (with the TLS files), --socket PATH, or both');
      }
      const tlsFiles = [options.tlsCert, options.tlsKey, options.tlsCa];
      if (options.listen === undefined && tlsFiles.some((f) => f !== undefined)) {
        throw new UsageError('--tls-cert, --tls-key and --tls-ca are for --listen');
      }
      let tcp: { host: string; port: number; tls: { cert: Buffer; key: Buffer; ca: Buffer } } | undefined;
      if (options.listen !== undefined) {
        const m = /^(.*):(\d+)$/.exec(options.listen);
        const port = m ? Number(m[2]) : NaN;
        if (!m || port > 65535) throw new UsageError(`--listen expects HOST:PORT, found ${JSON.stringify(options.listen)}`);
        if (tlsFiles.some((f) => f === undefined)) {
          throw new UsageError('--listen needs --tls-cert, --tls-key and --tls-ca: the member service serves TCP with TLS only');
        }
        tcp = {
          host: m[1]!.replace(/^\[(.*)\]$/, '$1'),
          port,
          tls: { cert: readPem(options.tlsCert!, '--tls-cert'), key: readPem(options.tlsKey!, '--tls-key'), ca: readPem(options.tlsCa!, '--tls-ca') },
        };
      }
      const text = memberTextSink(process.stderr, 'llraid member-serve: ');
      const json = options.events === undefined ? undefined : memberJsonSink(options.events);
      const events: MemberEventSink = (e) => {
        text(e);
        json?.(e);
      };
      const stop = new Promise<string>((resolve) => {
        process.once('SIGTERM', () => resolve('SIGTERM'));
        process.once('SIGINT', () => resolve('SIGINT'));
      });
      const log = (m: string): void => void process.stderr.write(`llraid member-serve: ${m}\n`);
      await runMemberService({ dirs, ...(tcp === undefined ? {} : { tcp }), ...(options.socket === undefined ? {} : { socket: options.socket }), events, log }, stop);
    });
}

function readPem(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new UsageError(`${what} ${path}: cannot read it: ${(err as Error).message}`);
  }
}
