/**
 * One process, many mounts.
 *
 * A MountServer owns every stratafs mount served by the current process: for each one
 * it opens the overlay, puts a FUSE connection on the mountpoint, runs a FuseSession on
 * it and, once the kernel ends the connection (unmount), closes the overlay and forgets
 * the mount. The single-mount CLI (src/cli/daemon.ts), the graph-driver plugin and
 * `stratafs daemon --socket` all go through here, so there is one code path for
 * mounting and one for cleaning up.
 *
 * What an extra mount costs: one overlay state (inode table, open layer dir fds), one
 * session and its device poller with a request buffer. The addon, the code and the
 * event loop are shared.
 *
 * The process that serves a mount must never access it (DESIGN.md, pitfalls): callers
 * of this module only hand mountpoints to other processes.
 */
import createDebug from 'debug';
import { realpathSync } from 'node:fs';
import { Overlay } from '../overlay';
import type { OverlayConfig } from '../overlay/config';
import type { FuseSession } from '../fuse/bridge';
import { threadAffinity } from '../fuse/bridge/affinity';
import { mountFuse, prepareMountpoint, unmountFuse } from '../mount/mountpoint';
import { mountedAt } from '../mountinfo';
import { DEFAULT_MOUNT_FLAGS } from '../mount/flags';
import { checkSpec, type MountSpec } from '../mount/spec';
import { StratafsError } from '../errors';
import { checkNotCrossed, checkOutsideServed, type MountDirs } from './own-mounts';
import { treeClonesAllowed } from '../layers/tree';
import { holdIdleRelease } from './idle-memory';
import { privilege } from '../privilege';
import { native } from '../native';

const log = createDebug('stratafs:server');
const affinityLog = createDebug('stratafs:affinity');

/** how long a new mount waits for the cleanup of one the kernel already ended */
const ENDED_WAIT_MS = 5_000;

/** A mount being served. `ended` resolves once the connection is gone and cleaned up. */
export interface ServedMount {
  readonly spec: MountSpec;
  readonly privileged: boolean;
  readonly ended: Promise<void>;
  /** a notice for the person who asked (e.g. a stale mountpoint was cleared) */
  readonly notice?: string;
  /** nodes in the mount's inode table right now (statistics) */
  nodeCount(): number;
  /** FUSE requests read so far, by opcode name (statistics: the workload's request mix) */
  requestCounts(): Record<string, number>;
  /** of those, what the device reader answered itself, and the nodes it knows answers of (FuseSession.answeredByReaders) */
  answeredByReader(): { GETXATTR: number; LISTXATTR: number; nodes: number };
  /** passthrough backing ids: registered so far (BACKING_OPEN), kept with no handle, handles open (statistics) */
  backingStats(): { opened: number; kept: number; handles: number };
}

/**
 * The FUSE session code, loaded on the first mount once the mount is in place: the
 * kernel queues requests until a reader takes them, and a caller told "mounted" (the
 * detached CLI) goes on while this loads.
 */
function closeDevice(fd: number): void {
  try {
    native.close(fd);
  } catch (e) {
    log('closing device fd %d: %s', fd, (e as Error).message);
  }
}

function sessionClass(): typeof FuseSession {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (require('../fuse/bridge') as typeof import('../fuse/bridge')).FuseSession;
}

export function overlayConfig(spec: MountSpec): OverlayConfig {
  return {
    lowerdirs: spec.lowerdirs,
    upperdir: spec.upperdir,
    workdir: spec.workdir,
    // trusted.* needs CAP_SYS_ADMIN over the host; the work dir probe has the last word
    xattrPrefix: privilege().hostAdmin ? 'trusted.overlay.' : 'user.overlay.',
    volatile: spec.volatile,
    uidMap: spec.uidMap,
    gidMap: spec.gidMap,
    squashToUid: spec.squashToUid,
    squashToGid: spec.squashToGid,
    metacopy: spec.metacopy,
    redirectDir: spec.redirectDir !== false,
    noatime: (spec.flags ?? DEFAULT_MOUNT_FLAGS).atime === 'noatime',
  };
}

export class MountServer {
  /** mountpoint -> its mount, from the moment mount() starts until cleanup is done */
  private readonly mounts = new Map<string, ServedMount>();
  /** mountpoint -> the same with symlinks resolved (taken before mounting) */
  private readonly realTargets = new Map<string, string>();
  /** mountpoint -> the directories it reads by path, symlinks resolved (own-mounts.ts) */
  private readonly readDirs = new Map<string, MountDirs>();
  /** the mounts whose setup finished (not the placeholders of mounts under way) */
  private readonly started = new WeakSet<ServedMount>();

  /**
   * Mounts and starts serving; resolves once the mount is ready to use. `onMounted` is
   * called as soon as the kernel has the mount (with the notice, if any), before the
   * session starts: what is checked before mounting is all that can fail.
   */
  async mount(asked: MountSpec, onMounted?: (notice?: string) => void): Promise<ServedMount> {
    const spec = checkSpec(asked);
    const target = spec.mountpoint;
    await this.endedBehindUs(target);
    if (this.mounts.has(target)) {
      throw new StratafsError('STRATAFS_ERR_MOUNTPOINT', `${target} is already served by this process`);
    }
    const served = new Set([...this.mounts.keys(), ...this.realTargets.values()]);
    for (const l of spec.lowerdirs) checkOutsideServed('lowerdir', l, served);
    if (spec.upperdir !== undefined) checkOutsideServed('upperdir', spec.upperdir, served);
    if (spec.workdir !== undefined) checkOutsideServed('workdir', spec.workdir, served);
    checkOutsideServed('mountpoint', target, served);
    // every path is outside the served mounts now: resolving them enters none; each is
    // resolved once, here, and the start takes these (StartReads)
    const real = new Map<string, string>();
    const realpathOr = (p: string): string => {
      try {
        const r = realpathSync(p);
        real.set(p, r);
        return r;
      } catch {
        return p;
      }
    };
    const dirs: MountDirs = {
      mountpoint: realpathOr(target),
      dirs: [
        ...spec.lowerdirs.map((l): [string, string] => ['lowerdir', realpathOr(l)]),
        ...(spec.upperdir === undefined ? [] : [['upperdir', realpathOr(spec.upperdir)] as [string, string]]),
        ...(spec.workdir === undefined ? [] : [['workdir', realpathOr(spec.workdir)] as [string, string]]),
      ],
    };
    checkNotCrossed(dirs, [...this.readDirs.values()], treeClonesAllowed());
    // where the kernel will have it (symlinks resolved): never looked up again once mounted
    this.realTargets.set(target, dirs.mountpoint);
    this.readDirs.set(target, dirs);
    // reserve the mountpoint while the (asynchronous) setup runs
    let settle!: () => void;
    const placeholder: ServedMount = { spec, privileged: false, ended: new Promise((r) => (settle = r)), nodeCount: () => 0, requestCounts: () => ({}),
      answeredByReader: () => ({ GETXATTR: 0, LISTXATTR: 0, nodes: 0 }), backingStats: () => ({ opened: 0, kept: 0, handles: 0 }) };
    this.mounts.set(target, placeholder);
    try {
      const served = await this.start(spec, real, onMounted);
      this.mounts.set(target, served);
      this.started.add(served);
      void served.ended.then(() => {
        if (this.mounts.get(target) === served) {
          this.mounts.delete(target);
          this.realTargets.delete(target);
          this.readDirs.delete(target);
        }
      });
      return served;
    } catch (e) {
      this.mounts.delete(target);
      this.realTargets.delete(target);
      this.readDirs.delete(target);
      throw e;
    } finally {
      settle();
    }
  }

  /**
   * A mount the kernel has already ended (an umount from outside) while its connection's
   * end is still on its way to this process: waits, a bounded time, for its cleanup, so
   * a mount asked for right after the umount is not refused. The mount table is read,
   * never the mountpoint: this process must not access its own mounts.
   */
  private async endedBehindUs(target: string): Promise<void> {
    const m = this.mounts.get(target);
    const real = this.realTargets.get(target);
    if (m === undefined || real === undefined || !this.started.has(m)) return;
    if (mountedAt(real) !== undefined) return;
    await Promise.race([m.ended, new Promise((r) => setTimeout(r, ENDED_WAIT_MS).unref())]);
  }

  /** `real`: the real paths mount() resolved, by the path given */
  private async start(spec: MountSpec, real: ReadonlyMap<string, string>, onMounted?: (notice?: string) => void): Promise<ServedMount> {
    const { notice, mounts } = prepareMountpoint(spec.mountpoint, real.get(spec.mountpoint));
    const overlay = await Overlay.open({ ...overlayConfig(spec), startReads: { mounts, realPaths: real } });
    let dev;
    try {
      dev = mountFuse(spec.mountpoint, spec.readOnly, spec.flags ?? DEFAULT_MOUNT_FLAGS);
    } catch (e) {
      overlay.destroy();
      throw e;
    }
    log('mounted %s (device fd %d, %d served)', spec.mountpoint, dev.devFd, this.mounts.size);
    onMounted?.(notice);
    const session = new (sessionClass())({
      devFd: dev.devFd,
      fs: overlay,
      passthrough: spec.passthrough,
      writeback: spec.writeback ?? 'off',
      uring: spec.uring ?? 'auto',
      affinity: spec.affinity === 'off' ? undefined : threadAffinity(affinityLog),
      // passthrough (BACKING_OPEN) needs CAP_SYS_ADMIN in the initial user namespace
      isRoot: dev.privileged && privilege().hostAdmin,
      // the kernel's cache timeouts are the bridge's business: the overlay never sees them
      attrTimeout: spec.timeout,
      entryTimeout: spec.timeout,
      acl: spec.acl,
    });
    const idle = holdIdleRelease();
    // the device fd is this process's to close once the connection has ended: an open
    // fd of /dev/fuse keeps the kernel's connection (and what it holds) alive
    const ended = session.start().then(() => log('connection ended: %s', spec.mountpoint)).finally(() => {
      closeDevice(dev.devFd);
      idle();
    });
    return { spec, privileged: dev.privileged, ended, notice, nodeCount: () => overlay.nodeCount, requestCounts: () => session.requestCounts(),
      answeredByReader: () => session.answeredByReaders(), backingStats: () => ({ opened: session.passthrough.opened, kept: session.passthrough.keptCount, handles: session.passthrough.stats().handles }) };
  }

  /** Asks the kernel to end a mount; resolves once it is gone and cleaned up. */
  async unmount(target: string): Promise<void> {
    const m = this.mounts.get(target);
    if (!m) throw new StratafsError('STRATAFS_ERR_MOUNTPOINT', `${target} is not served by this process`);
    await unmountFuse(target, m.privileged);
    await m.ended;
  }

  /** the mountpoints served right now */
  list(): MountSpec[] {
    return [...this.mounts.values()].map((m) => m.spec);
  }

  has(target: string): boolean {
    return this.mounts.has(target);
  }

  get size(): number {
    return this.mounts.size;
  }

  /** Unmounts everything (best effort: one failure does not stop the others). */
  async closeAll(): Promise<void> {
    const failures: string[] = [];
    await Promise.all([...this.mounts.keys()].map(async (target) => {
      try {
        await this.unmount(target);
      } catch (e) {
        failures.push(`${target}: ${(e as Error).message}`);
      }
    }));
    if (failures.length > 0) {
      throw new StratafsError('STRATAFS_ERR_MOUNT', `cannot unmount ${failures.join('; ')}`);
    }
  }
}
