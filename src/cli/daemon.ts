/**
 * The life of one mount started from the command line: mount through a MountServer of
 * its own (the same code path as the graph-driver plugin and `stratafs daemon`), serve
 * until the kernel ends the connection (fusermount3 -u / umount, or a signal that asks
 * us to unmount), then leave.
 */
import createDebug from 'debug';
import { MountServer } from '../server/mount-server';
import type { MountOptions } from '../mount/options';
import type { ReadyChannel } from './detach';

// main.ts takes it from here: this module is the one it loads (lazily) to mount
export { leaveSession } from '../mount/session';

const log = createDebug('stratafs:daemon');

const SIGNALS = ['SIGTERM', 'SIGINT', 'SIGHUP'] as const;

/**
 * Mounts and serves. `report` receives the mount's progress: notices, then ready or an
 * error. Resolves once the mount is gone.
 */
export async function serve(opts: MountOptions, report: ReadyChannel): Promise<void> {
  if (opts.ignored.length > 0) log('options without effect here: %s', opts.ignored.join(','));
  const server = new MountServer();

  let unmounting = false;
  const onSignal = (sig: NodeJS.Signals): void => {
    log('%s: unmounting %s', sig, opts.mountpoint);
    if (unmounting) return;
    unmounting = true;
    server.unmount(opts.mountpoint).catch((e: Error) => {
      process.stderr.write(`stratafs: cannot unmount ${opts.mountpoint}: ${e.message}\n`);
    });
  };
  // the caller learns "ready" as soon as the kernel has the mount; the session code
  // loads after that (MountServer.mount)
  const mounted = await server.mount(opts, (notice) => {
    if (notice) report.notice(notice);
    for (const sig of SIGNALS) process.on(sig, onSignal);
    report.ready();
  });
  // SIGUSR2: one line of statistics on stderr (inode table size and heap, for leak hunting;
  // after a full collection when node runs with --expose-gc; the requests read so far by
  // opcode, the request mix of a workload)
  // (process.memoryUsage() reads /proc: under fd pressure it throws EMFILE, which must not
  // end the daemon from a signal handler)
  const onStats = (): void => {
    try {
      (globalThis as { gc?: () => void }).gc?.();
      const mem = process.memoryUsage();
      const mib = (n: number): number => Math.round(n / 104857.6) / 10;
      process.stderr.write(`stratafs: stats ${JSON.stringify({ nodes: mounted.nodeCount(), rssMiB: mib(mem.rss),
        heapUsedMiB: mib(mem.heapUsed), heapTotalMiB: mib(mem.heapTotal), externalMiB: mib(mem.external),
        arrayBuffersMiB: mib(mem.arrayBuffers), requests: mounted.requestCounts(), answeredByReader: mounted.answeredByReader() })}
`);
    } catch (e) {
      process.stderr.write(`stratafs: stats: ${(e as Error).message}\n`);
    }
  };
  process.on('SIGUSR2', onStats);
  await mounted.ended;
  // -d: the request mix of the whole mount, as fuse-overlayfs -d lets one count it
  log('requests by opcode: %o', mounted.requestCounts());
  for (const sig of SIGNALS) process.off(sig, onSignal);
  process.off('SIGUSR2', onStats);
}
