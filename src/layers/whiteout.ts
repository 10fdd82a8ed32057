/**
 * Whiteouts and opaque directories: how a layer says "this name is gone" or "ignore
 * what the layers below have in this directory".
 *
 * Forms we read (in every layer unless noted):
 * - Character device 0/0: the kernel overlayfs whiteout, the only form we write.
 * - Zero-size regular file carrying the `<prefix>whiteout` xattr ("xwhiteout", kernel
 *   6.7+): honoured only in a directory marked with `<prefix>opaque` = "x" (the marker
 *   the kernel requires, and it saves an xattr read per file). Read only.
 * - AUFS style, lowers only (how image layers are extracted by some tools):
 *   `.wh.<name>` hides <name> in the layers below; `.wh..wh..opq` makes its directory
 *   opaque. `.wh.*` names (and their meta files such as `.wh..wh.plnk`) are never shown.
 *   In the upper such names are merely hidden, never interpreted.
 * - Opaque: `<prefix>opaque` = "y" on a directory stops the merge at that directory.
 *   Both `trusted.overlay.` and `user.overlay.` are accepted when reading, so layers
 *   written by a privileged and an unprivileged overlay both work; we write only the
 *   configured prefix.
 */
import { constants as fsc } from 'node:fs';
import { E, toErrno } from '../errors';
import { native, type Stat } from '../native';
import { tryGetXattr, xattrPath } from './access';

export const AUFS_PREFIX = '.wh.';
export const AUFS_OPAQUE = '.wh..wh..opq';
/** the private overlay xattr prefixes, both read whatever the mount writes */
export const PRIVATE_PREFIXES = ['trusted.overlay.', 'user.overlay.'] as const;

export function isAufsName(name: string): boolean {
  return name.startsWith(AUFS_PREFIX);
}

/** true for a 0/0 character device */
export function isCharWhiteout(st: Stat): boolean {
  return (st.mode & fsc.S_IFMT) === fsc.S_IFCHR && st.rdevMajor === 0 && st.rdevMinor === 0;
}

/** Reads a private overlay xattr under either prefix (`attr` without prefix, e.g. "opaque"). */
export function readPrivateXattr(dirfd: number, name: string, attr: string): Buffer | null {
  for (const p of PRIVATE_PREFIXES) {
    const v = tryGetXattr(dirfd, name, p + attr);
    if (v !== null) return v;
  }
  return null;
}

/**
 * Is `name` (statted as `st`) in directory `dirfd` a whiteout? `xwhiteouts` says whether
 * the directory is marked as holding xattr whiteouts.
 */
export function isWhiteout(dirfd: number, name: string, st: Stat, xwhiteouts: boolean): boolean {
  if (isCharWhiteout(st)) return true;
  if (xwhiteouts && (st.mode & fsc.S_IFMT) === fsc.S_IFREG && st.size === 0) {
    return readPrivateXattr(dirfd, name, 'whiteout') !== null;
  }
  return false;
}

export interface DirMarks {
  /** the merge stops here */
  opaque: boolean;
  /** holds xattr whiteouts (opaque = "x") */
  xwhiteouts: boolean;
  /** `<prefix>redirect`, byte string, when set */
  redirect: string | null;
}

/**
 * Marks of directory `name` inside `dirfd` ('' = dirfd itself). `aufsOpaque`, when
 * given (lowers), says whether the directory holds the AUFS opaque marker. `known`: its
 * xattr names when already read (a lower directory read ahead), else they are listed.
 */
export function dirMarks(dirfd: number, name: string, aufsOpaque: (() => boolean) | null, known: readonly string[] | null = null): DirMarks {
  // one listxattr instead of a getxattr per attribute and prefix: most dirs have none
  const names = known ?? listXattrNames(dirfd, name);
  const read = (attr: string): string | null => {
    if (!PRIVATE_PREFIXES.some((p) => names.includes(p + attr))) return null;
    const v = readPrivateXattr(dirfd, name, attr);
    return v === null ? null : v.toString('latin1');
  };
  const v = read('opaque');
  let opaque = v === 'y';
  const xwhiteouts = v === 'x';
  if (!opaque && aufsOpaque !== null) opaque = aufsOpaque();
  return { opaque, xwhiteouts, redirect: read('redirect') };
}

function listXattrNames(dirfd: number, name: string): string[] {
  const { path, follow } = xattrPath(dirfd, name);
  try {
    return native.listxattr(path, follow);
  } catch {
    return [];
  }
}

/** Creates a kernel-style whiteout (char device 0/0) `name` in `dirfd`. */
export function makeWhiteout(dirfd: number, name: string): void {
  native.mknodat(dirfd, name, fsc.S_IFCHR, 0, 0);
}

/**
 * Whiteouts that share one inode, as kernel overlayfs makes them (since 5.8): a 0/0
 * device in the work dir, hard-linked to each place that needs a whiteout. A link only
 * adds a directory entry where mknod also allocates an inode, which makes `rm -rf` of
 * a lower tree cheaper. When the shared inode takes no more links (EMLINK) or is gone,
 * a new one is made; where linking fails otherwise, each whiteout is its own mknod.
 * The shared one is a work dir entry, removed with the other leftovers at the next mount.
 */
export class Whiteouts {
  private shared: string | null = null;

  constructor(private readonly workFd: number, private readonly tmpName: () => string) {}

  /** A whiteout `name` in `dirfd` (EEXIST when the name is taken). */
  make(dirfd: number, name: string): void {
    if (this.workFd < 0) return makeWhiteout(dirfd, name);
    for (let attempt = 0; attempt < 2; attempt++) {
      if (this.shared === null) {
        const n = this.tmpName();
        try {
          makeWhiteout(this.workFd, n);
        } catch {
          return makeWhiteout(dirfd, name);
        }
        this.shared = n;
      }
      try {
        native.linkat(this.workFd, this.shared, dirfd, name, 0);
        return;
      } catch (e) {
        const errno = toErrno(e);
        if (errno === E.EEXIST) throw e;
        if (errno !== E.EMLINK && errno !== E.ENOENT) break;
        this.shared = null;
      }
    }
    makeWhiteout(dirfd, name);
  }
}
