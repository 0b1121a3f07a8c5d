// `llraid engine-host`: runs the node's volume engines and their attachments apart from the CSI
// node plugin (src/csi/engine-host.ts says why), and the node's member service when one is
// configured (src/csi/member-service-runner.ts). The chart runs it as its own DaemonSet; the
// plugin finds it through LLRAID_ENGINE_HOST. Until SIGTERM/SIGINT.

import type { Command } from 'commander';
import path from 'node:path';
import { engineCommand } from '../engine-command.js';

interface EngineHostOptions {
  runDir?: string;
  socket?: string;
  attach?: string;
  memberServiceListen?: string;
  tlsDir?: string;
  disks?: string;
}

export function register(program: Command): void {
  program
    .command('engine-host')
    .description('run the node\'s volume engines and attachments for the CSI plugin, which reaches it on a unix socket')
    .option('--run-dir <dir>', 'engine sockets, logs and FUSE mount points (LLRAID_RUN_DIR; default /run/llraid)')
    .option('--socket <path>', 'where the plugin reaches this host (LLRAID_ENGINE_HOST; default <run dir>/engine-host.sock)')
    .option('--attach <mode>', 'kernel, fuse or auto (LLRAID_ATTACH; default auto: kernel when the nbd module exists)')
    .option('--member-service-listen <host:port>', 'run the node\'s member service (llraid member-serve) on this address, with TLS (LLRAID_MEMBER_SERVICE_LISTEN; default: none)')
    .option('--tls-dir <dir>', 'the member service\'s TLS files: ca.crt, tls.crt, tls.key (LLRAID_TLS_DIR)')
    .option('--disks <dirs>', 'comma-separated disk directories whose member files the member service exports (LLRAID_DISKS)')
    .action(async (o: EngineHostOptions) => {
      const [{ EngineHost }, { EngineSupervisor }, { createAttacher }, { enableIoFlusher }, { claimSocketPath }, { UsageError }, { fromEnvironment, memberServiceFromLayers }, { MemberServiceRunner }] = await Promise.all([
        import('../../csi/engine-host.js'),
        import('../../engine/supervisor.js'),
        import('../../csi/attachers.js'),
        import('../../engine/io-flusher.js'),
        import('../../block/socket-file.js'),
        import('../report-error.js'),
        import('../../csi/config.js'),
        import('../../csi/member-service-runner.js'),
      ]);
      const log = (m: string): void => void process.stderr.write(`llraid engine-host: ${m}\n`);
      const runDir = path.resolve(o.runDir ?? process.env.LLRAID_RUN_DIR ?? '/run/llraid');
      const socket = path.resolve(o.socket ?? (process.env.LLRAID_ENGINE_HOST || path.join(runDir, 'engine-host.sock')).replace(/^unix:\/\//, ''));
      const attach = o.attach ?? process.env.LLRAID_ATTACH ?? 'auto';
      if (attach !== 'kernel' && attach !== 'fuse' && attach !== 'auto') throw new UsageError(`--attach: expected kernel, fuse or auto, found ${JSON.stringify(attach)}`);
      // Checked before anything starts: a wrong setting ends the host here, having changed nothing.
      const memberServiceConfig = memberServiceFromLayers(
        { memberServiceListen: o.memberServiceListen, tlsDir: o.tlsDir, disks: o.disks },
        fromEnvironment(process.env),
      );
      // Before any engine starts: they and their FUSE servers inherit the flag.
      const flusher = await enableIoFlusher();
      log(flusher.ok ? 'PR_SET_IO_FLUSHER set: engines inherit it' : `engines run without PR_SET_IO_FLUSHER: ${flusher.reason}`);
      const { mkdir } = await import('node:fs/promises');
      await mkdir(runDir, { recursive: true, mode: 0o700 });
      await claimSocketPath(socket, 'engine host socket (--socket)');
      // The engine and the member service are this same CLI (same node, same loader flags such as tsx).
      const command = engineCommand();
      // First: a member service that cannot start (its port held by another process, its TLS
      // files unreadable) ends the host before it adopts or starts any engine.
      const memberService = memberServiceConfig === undefined ? undefined : new MemberServiceRunner(memberServiceConfig, { command, runDir, log });
      await memberService?.start();
      const engines = new EngineSupervisor({ command, runDir, log });
      const adopted = await engines.adoptRunning();
      if (adopted.length > 0) log(`adopted running engines: ${adopted.join(', ')}`);
      const attacher = createAttacher(attach, runDir);
      const host = new EngineHost(engines, attacher, { attachMode: attacher.mode, canResize: attacher.resize !== undefined, ioFlusher: flusher.ok });
      await host.listen(socket);
      log(`serving on ${socket} (run dir ${runDir}, attach ${attacher.mode})`);
      const signal = await new Promise<NodeJS.Signals>((resolve) => {
        process.once('SIGTERM', () => resolve('SIGTERM'));
        process.once('SIGINT', () => resolve('SIGINT'));
      });
      await host.close();
      if (process.pid === 1) {
        // PID 1 of a container: its exit takes every engine down with it. A clean stop at least
        // leaves nothing to resync (the pods using them lose their volumes either way).
        log(`${signal}: stopping every engine${memberService ? ' and the member service' : ''} cleanly before this container goes`);
        await engines.stopAll();
        await memberService?.close(true);
      } else {
        log(`${signal}: stopping; engines${memberService ? ' and the member service' : ''} keep running for the next engine host to adopt`);
        await memberService?.close(false);
      }
    });
}
