/**
 * The life of one mount: check the mountpoint, open the layers, mount, serve until the
 * kernel ends the connection (fusermount3 -u / umount, or a signal that asks us to
 * unmount), then leave.
 */
import createDebug from 'debug';
import { Overlay } from '../overlay';
import type { OverlayConfig } from '../overlay/config';
import { FuseSession } from '../fuse/bridge';
import { mountFuse, prepareMountpoint, unmountFuse } from './mountpoint';
import type { MountOptions } from './options';
import type { ReadyChannel } from './detach';

const log = createDebug('stratafs:daemon');

/** Reader threads on the device (the first fd plus clones). */
const READERS = 2;

export function overlayConfig(opts: MountOptions): OverlayConfig {
  const root = process.getuid?.() === 0;
  return {
    lowerdirs: opts.lowerdirs,
    upperdir: opts.upperdir,
    workdir: opts.workdir,
    xattrPrefix: root ? 'trusted.overlay.' : 'user.overlay.',
    volatile: opts.volatile,
    uidMap: opts.uidMap,
    gidMap: opts.gidMap,
    squashToUid: opts.squashToUid,
    squashToGid: opts.squashToGid,
    entryTimeout: opts.timeout,
    attrTimeout: opts.timeout,
  };
}

/**
 * Mounts and serves. `report` receives the mount's progress: notices, then ready or an
 * error. Resolves once the mount is gone.
 */
export async function serve(opts: MountOptions, report: ReadyChannel): Promise<void> {
  if (opts.ignored.length > 0) log('options without effect here: %s', opts.ignored.join(','));
  const stale = prepareMountpoint(opts.mountpoint);
  if (stale) report.notice(stale);

  const overlay = await Overlay.open(overlayConfig(opts));
  let dev;
  try {
    dev = mountFuse(opts.mountpoint, opts.readOnly);
  } catch (e) {
    overlay.destroy();
    throw e;
  }
  log('mounted %s (device fd %d)', opts.mountpoint, dev.devFd);

  const session = new FuseSession({
    devFd: dev.devFd,
    fs: overlay,
    readers: READERS,
    passthrough: opts.passthrough,
    isRoot: dev.privileged,
    attrTimeout: opts.timeout,
    acl: opts.acl,
  });
  const ended = session.start();

  let unmounting = false;
  const onSignal = (sig: NodeJS.Signals): void => {
    log('%s: unmounting %s', sig, opts.mountpoint);
    if (unmounting) return;
    unmounting = true;
    unmountFuse(opts.mountpoint, dev.privileged).catch((e: Error) => {
      process.stderr.write(`stratafs: cannot unmount ${opts.mountpoint}: ${e.message}\n`);
    });
  };
  for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.on(sig, onSignal);
  // SIGUSR2: one line of statistics on stderr (inode table size and heap, for leak hunting;
  // after a full collection when node runs with --expose-gc)
  const onStats = (): void => {
    (globalThis as { gc?: () => void }).gc?.();
    const mem = process.memoryUsage();
    const mib = (n: number): number => Math.round(n / 104857.6) / 10;
    process.stderr.write(`stratafs: stats ${JSON.stringify({ nodes: overlay.nodeCount, rssMiB: mib(mem.rss), heapUsedMiB: mib(mem.heapUsed) })}\n`);
  };
  process.on('SIGUSR2', onStats);

  report.ready();
  await ended;
  for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.off(sig, onSignal);
  process.off('SIGUSR2', onStats);
  log('connection ended: %s', opts.mountpoint);
}
