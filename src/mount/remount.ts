/**
 * `mount -o remount,...` of a stratafs mount. The kernel tells a FUSE filesystem nothing
 * about a remount (fuse_reconfigure takes the VFS flags and ignores the option string of
 * the old mount(2) API), and mount(8) hands fuse.* remounts to mount.fuse, which runs
 * `stratafs SOURCE MNT -o OPTIONS,remount,dev,suid`. So this program applies the
 * remount itself, with mount(2) MS_REMOUNT, as kernel overlayfs would take it:
 *
 * - ro/rw and the mount flags (nosuid, nodev, noexec, atime policy) change; flags not
 *   named keep their current state (read from /proc/self/mountinfo, as libmount merges
 *   them for kernel filesystems), except that naming one atime flag resets the others
 *   to relatime,diratime first, as mount(2) does;
 * - `dev` and `suid` do not lift a current nodev/nosuid: mount.fuse adds both to every
 *   call as root, so they cannot be told from a request (unmount and mount again);
 * - anything else (lowerdir, upperdir, uidmapping, ...) cannot change on a mounted
 *   stratafs: refused in one line, where kernel overlayfs ignores it without a word.
 */
import { realpathSync } from 'node:fs';
import { StratafsError } from '../errors';
import { C, native } from '../native';
import { privilege } from '../privilege';
import { mountedAt } from '../mountinfo';
import { applyFlagOption, msFlags, type MountFlags } from './flags';
import { FS_NAME, FS_TYPE } from './mountpoint';

const ATIME_OPTIONS = new Set(['noatime', 'relatime', 'strictatime', 'atime', 'nodiratime', 'diratime']);

/** Remounts TARGET with the ro/rw and flag options GIVEN (in order); OTHER are refused. */
export function remount(target: string, given: readonly string[], other: readonly string[]): void {
  if (other.length > 0) {
    throw new StratafsError('STRATAFS_ERR_OPTION',
      `remount changes only ro/rw and the mount flags (nosuid, nodev, noexec, noatime, ...): ${other.join(', ')} ` +
      'cannot change on a mounted stratafs (unmount and mount again)');
  }
  let real: string;
  try {
    real = realpathSync(target);
  } catch (e) {
    throw new StratafsError('STRATAFS_ERR_MOUNTPOINT', `cannot remount ${target}: ${(e as Error).message}`);
  }
  const cur = mountedAt(real);
  if (cur?.fstype !== FS_TYPE) {
    throw new StratafsError('STRATAFS_ERR_MOUNTPOINT', `cannot remount ${target}: no stratafs is mounted there`);
  }
  if (!privilege().capSysAdmin) {
    throw new StratafsError('STRATAFS_ERR_MOUNT', `cannot remount ${target}: remounting needs CAP_SYS_ADMIN (fusermount3 cannot remount)`);
  }
  const has = (w: string): boolean => cur.options.includes(w);
  const flags: MountFlags = {
    nosuid: has('nosuid'),
    nodev: has('nodev'),
    noexec: has('noexec'),
    atime: has('noatime') ? 'noatime' : has('relatime') ? 'relatime' : 'strictatime',
    nodiratime: has('nodiratime'),
  };
  // as mount(2) does: naming any atime flag resets the rest of them to the default
  // (relatime, diratime); naming none keeps them
  if (given.some((n) => ATIME_OPTIONS.has(n))) {
    flags.atime = 'relatime';
    flags.nodiratime = false;
  }
  let ro = has('ro');
  for (const name of given) {
    if (name === 'ro') ro = true;
    else if (name === 'rw') ro = false;
    else if ((name === 'dev' && flags.nodev) || (name === 'suid' && flags.nosuid)) continue;
    else applyFlagOption(flags, name);
  }
  try {
    native.mount(FS_NAME, real, FS_TYPE, C.MS_REMOUNT | msFlags(flags, ro), '');
  } catch (e) {
    throw new StratafsError('STRATAFS_ERR_MOUNT', `cannot remount ${target}: ${(e as Error).message}`);
  }
}
