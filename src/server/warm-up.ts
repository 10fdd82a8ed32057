/**
 * What `npm run build` runs before it saves the bundle's code cache (scripts/bundle.mjs,
 * bin/stratafs.js): a mount's command line parsed, a scratch overlay opened in a temp
 * dir and a mount's first requests served by it without a kernel
 * (src/fuse/bridge/first-requests.ts), so that the cache holds the functions a mount and
 * its first walk compile, not only the module bodies. The temp dir is removed.
 */
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { serveFirstRequests } from '../fuse/bridge/first-requests';
import { parseArgs } from '../mount/options';
import { checkSpec } from '../mount/spec';
import { Overlay } from '../overlay';
import { msFlags } from '../mount/flags';
import { mountFuse, prepareMountpoint } from '../mount/mountpoint';
import { mountedAt } from '../mountinfo';
import { cpuUtilization, holdIdleRelease, IdleRelease, intervalFromEnv } from './idle-memory';
import { MountServer, overlayConfig } from './mount-server';
import { checkNotCrossed, checkOutsideServed } from './own-mounts';

async function serveScratch(dir: string): Promise<void> {
  const [lower, upper, work, mnt] = ['lower', 'upper', 'work', 'mnt'].map((d) => join(dir, d)) as [string, string, string, string];
  for (const d of [lower, upper, work, mnt, join(lower, 'etc')]) mkdirSync(d);
  writeFileSync(join(lower, 'etc', 'hostname'), 'stratafs\n');
  symlinkSync('etc/hostname', join(lower, 'name'));
  const command = parseArgs(['-f', '-o', `lowerdir=${lower},upperdir=${upper},workdir=${work}`, mnt]);
  if (command.kind !== 'mount') throw new Error(`the command line parsed as ${command.kind}`);
  await serveFirstRequests(await Overlay.open(overlayConfig(checkSpec(command.options))), { dir: 'etc', file: 'hostname', link: 'name' });
}

/** Serves a scratch overlay's first requests in a temp dir it removes again. */
export async function warmUp(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'stratafs-warm-up-'));
  try {
    await serveScratch(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** a function of the mount path, for the build to compile (never called here) */
export type MountPathFunction = (...args: never[]) => unknown;

/**
 * The functions of this layer and below that a mount runs once, before and around
 * mount(2) and at its end, and that the scratch overlay of warmUp cannot run without a
 * kernel: the mount server's mount, the mountpoint's checks, mount(2) itself and the
 * daemon's idle releaser, made, started and settled once per daemon (the command line's
 * own, main and the daemon's serve, are added by the bundle's entry, scripts/bundle.mjs).
 * V8 compiles a function when it is first called, so without them in the code cache
 * every mount compiled them at start (bin/stratafs.js compiles them, without calling
 * them, before it saves the cache). Their inner closures are not covered.
 */
export function mountPathFunctions(): MountPathFunction[] {
  // the server's private steps are methods of its prototype like the public ones
  const server = MountServer.prototype as unknown as Record<'mount' | 'start' | 'endedBehindUs', MountPathFunction>;
  const release = IdleRelease.prototype;
  const classes = [MountServer, IdleRelease] as unknown as MountPathFunction[];
  return [server.mount, server.start, server.endedBehindUs, prepareMountpoint, mountFuse,
    checkNotCrossed, checkOutsideServed, holdIdleRelease, mountedAt, msFlags, ...classes,
    intervalFromEnv, cpuUtilization, release.start, release.settle, release.mountEnded];
}
