/**
 * Putting a FUSE connection on a directory and taking it off again.
 *
 * With CAP_SYS_ADMIN (root, or uid 0 of a user namespace such as rootless podman's):
 * open /dev/fuse and call mount(2) with the fd in the data string and the flags asked
 * for (flags.ts; by default no MS_NOSUID: setuid programs inside a container
 * rootfs must work). Where mount(2) is refused (EPERM: a
 * user namespace that does not own our mount namespace), and without the capability,
 * the fusermount3 handshake hands us the device fd, as libfuse does.
 */
import { accessSync, constants as fsc, realpathSync } from 'node:fs';
import { native, C, isNativeError } from '../native';
import { StratafsError } from '../errors';
import { privilege } from '../privilege';
import { mountedAt, readMounts, type MountEntry } from '../mountinfo';
import { fusermountFlagOptions, msFlags, type MountFlags } from './flags';

export const FS_NAME = 'stratafs';
export const FS_TYPE = `fuse.${FS_NAME}`;
const DEVICE = '/dev/fuse';

export interface MountedDevice {
  devFd: number;
  privileged: boolean;
}

/** What the mountpoint check found: a notice for the person who asked, the table it read. */
export interface PreparedMountpoint {
  /** a stale FUSE mount was detached */
  notice?: string;
  /** the mount table read for the check (absent when a stale mount was detached instead) */
  mounts?: readonly MountEntry[];
}

/**
 * Checks the mountpoint before anything is mounted (`real`: its real path, where resolved
 * already). A stale FUSE mount left by a killed daemon ("Transport endpoint is not
 * connected") is detached so the new mount can take its place; the notice says so.
 * Anything else wrong is an error. The mount table read for the check is handed on: the
 * rest of the start looks into it and reads it no more.
 */
export function prepareMountpoint(target: string, real?: string): PreparedMountpoint {
  try {
    const st = native.statx(C.AT_FDCWD, target, 0);
    if ((st.mode & fsc.S_IFMT) !== fsc.S_IFDIR) {
      throw new StratafsError('STRATAFS_ERR_MOUNTPOINT', `mountpoint ${target} is not a directory`);
    }
    const mounts = readMounts();
    const busy = mountedAt(real ?? realpathSync(target), mounts);
    if (busy !== undefined) {
      throw new StratafsError('STRATAFS_ERR_MOUNTPOINT', `mountpoint ${target} is busy: ${busy.fstype} is mounted there (unmount it first)`);
    }
    return { mounts };
  } catch (e) {
    if (!isNativeError(e)) throw e;
    if (e.code === 'ENOTCONN') {
      try {
        native.umount2(target, C.MNT_DETACH);
      } catch (u) {
        throw new StratafsError('STRATAFS_ERR_MOUNTPOINT',
          `mountpoint ${target} is a stale FUSE mount and could not be detached: ${(u as Error).message}`);
      }
      return { notice: `mountpoint ${target} was a stale mount (transport endpoint is not connected); detached it` };
    }
    if (e.code === 'ENOENT') throw new StratafsError('STRATAFS_ERR_MOUNTPOINT', `mountpoint ${target} does not exist`);
    throw new StratafsError('STRATAFS_ERR_MOUNTPOINT', `mountpoint ${target}: ${e.message}`);
  }
}

function viaFusermount(target: string, readOnly: boolean, flags: MountFlags): MountedDevice {
  const flagOpts = fusermountFlagOptions(flags, readOnly);
  // fusermount3 opens the device as the caller and only says why on its stderr
  try {
    accessSync(DEVICE, fsc.R_OK | fsc.W_OK);
  } catch (e) {
    throw new StratafsError('STRATAFS_ERR_MOUNT', deviceError(e) ?? `${DEVICE}: ${(e as Error).message}`);
  }
  const opts = [`fsname=${FS_NAME}`, `subtype=${FS_NAME}`, 'default_permissions', ...flagOpts];
  return { devFd: native.fusermount(target, opts.join(',')), privileged: false };
}

/** /dev/fuse cannot be opened: say why in words a person can act on. */
function deviceError(e: unknown): string | undefined {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  if (typeof code !== 'string') return undefined;
  if (code === 'EACCES' || code === 'EPERM') {
    return `${DEVICE} is not readable and writable by uid ${process.getuid?.() ?? '?'} (${code}); ` +
      'mounting without root needs it at mode 0666, as distributions ship it';
  }
  if (code === 'ENOENT' || code === 'ENODEV' || code === 'ENXIO') {
    return `${DEVICE} is missing (${code}); load the fuse module or give the container the device`;
  }
  return undefined;
}

export function mountFuse(target: string, readOnly: boolean, flags: MountFlags): MountedDevice {
  try {
    if (!privilege().capSysAdmin) return viaFusermount(target, readOnly, flags);
    let devFd: number;
    try {
      devFd = native.fuseOpen();
    } catch (e) {
      const why = deviceError(e);
      throw why === undefined ? e : new StratafsError('STRATAFS_ERR_MOUNT', why);
    }
    // rootmode: the root's file type in octal, as the kernel parses it
    const ids = `user_id=${process.getuid?.() ?? 0},group_id=${process.getgid?.() ?? 0}`;
    const data = `fd=${devFd},rootmode=${fsc.S_IFDIR.toString(8)},${ids},allow_other,default_permissions`;
    try {
      native.mount(FS_NAME, target, FS_TYPE, msFlags(flags, readOnly), data);
    } catch (e) {
      native.close(devFd);
      // a user namespace that does not own this mount namespace: fusermount3 can
      if (isNativeError(e) && e.code === 'EPERM' && !privilege().initialUserNs) return viaFusermount(target, readOnly, flags);
      throw e;
    }
    return { devFd, privileged: true };
  } catch (e) {
    if (e instanceof StratafsError) throw new StratafsError(e.code, `cannot mount on ${target}: ${e.message}`);
    throw new StratafsError('STRATAFS_ERR_MOUNT', `cannot mount on ${target}: ${(e as Error).message}`);
  }
}

/** Ends the mount: the kernel then ends the connection and the readers see ENODEV. */
export async function unmountFuse(target: string, privileged: boolean): Promise<void> {
  if (privileged) {
    try {
      native.umount2(target, 0);
      return;
    } catch (e) {
      if (isNativeError(e) && e.code === 'EINVAL') return; // not mounted (any more)
      native.umount2(target, C.MNT_DETACH);
      return;
    }
  }
  // loaded here: a mount daemon unmounts this way rarely, and child_process costs every
  // start about 3 ms CPU (README, Performance)
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { execFile } = require('node:child_process') as typeof import('node:child_process');
  await new Promise<void>((resolve, reject) => {
    execFile('fusermount3', ['-u', '-z', target], (err) => (err ? reject(err) : resolve()));
  });
}
