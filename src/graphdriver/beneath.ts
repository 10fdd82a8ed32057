/**
 * Writing into a layer directory without ever leaving it.
 *
 * Tar entry names come from whoever built the image. Every directory is opened from the
 * layer's root fd with openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS): a `..`
 * component, an absolute symlink or a relative one that climbs out of the layer fails
 * (EXDEV) instead of reaching the host. The last component is then created or changed
 * with *at() calls on that directory fd, none of which follow a final symlink.
 *
 * Names here are byte strings (see src/native/addon.d.ts): each JS char is one byte.
 */
import { constants as fsc } from 'node:fs';
import { native, C, isNativeError } from '../native';
import { StratafsError } from '../errors';

const BENEATH = C.RESOLVE_BENEATH | C.RESOLVE_NO_MAGICLINKS;
const DIR_PATH = C.O_PATH | C.O_DIRECTORY | C.O_CLOEXEC;

export const tarError = (msg: string): StratafsError => new StratafsError('STRATAFS_ERR_TAR', msg);

/** Turns a UTF-8 JS string into a byte string. */
export const bytes = (s: string): string => Buffer.from(s, 'utf8').toString('latin1');
/** A byte string shown to a person. */
export const shown = (b: string): string => Buffer.from(b, 'latin1').toString('utf8');

/**
 * Splits an archive member name into its components: leading `/` and `./` go, `.` and
 * empty components are dropped, `..` is refused. [] is the root itself.
 */
export function components(name: string): string[] {
  const parts = name.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) throw tarError(`tar entry "${shown(name)}" leaves the layer (..)`);
  return parts;
}

export class LayerRoot {
  readonly fd: number;
  /** directories opened so far, by relative path (closed by close()) */
  private readonly dirs = new Map<string, number>();

  constructor(readonly root: string) {
    this.fd = native.openat(C.AT_FDCWD, bytes(root), DIR_PATH, 0);
  }

  /**
   * An O_PATH fd of the directory `parts` beneath the root, created (mode 0755) where
   * missing. Cached until close() or forget().
   */
  dir(parts: string[]): number {
    if (parts.length === 0) return this.fd;
    const rel = parts.join('/');
    const cached = this.dirs.get(rel);
    if (cached !== undefined) return cached;
    let fd: number;
    try {
      fd = native.openat2(this.fd, rel, DIR_PATH, 0, BENEATH);
    } catch (e) {
      if (!isNativeError(e)) throw e;
      if (e.code === 'ENOENT') {
        const parent = this.dir(parts.slice(0, -1));
        try {
          native.mkdirat(parent, parts[parts.length - 1], 0o755);
        } catch (m) {
          if (!isNativeError(m) || m.code !== 'EEXIST') throw m;
        }
        fd = native.openat2(this.fd, rel, DIR_PATH, 0, BENEATH);
      } else if (e.code === 'EXDEV' || e.code === 'ELOOP') {
        throw tarError(`"${shown(rel)}" resolves through a symlink that leaves the layer`);
      } else if (e.code === 'ENOTDIR') {
        throw tarError(`"${shown(rel)}" is not a directory in the layer`);
      } else throw e;
    }
    this.dirs.set(rel, fd);
    return fd;
  }

  /** Drops cached fds at and below `parts` (the directory was replaced or removed). */
  forget(parts: string[]): void {
    const rel = parts.join('/');
    for (const [k, fd] of this.dirs) {
      if (k === rel || k.startsWith(`${rel}/`)) {
        native.close(fd);
        this.dirs.delete(k);
      }
    }
  }

  close(): void {
    for (const fd of this.dirs.values()) native.close(fd);
    this.dirs.clear();
    native.close(this.fd);
  }
}

/** lstat of NAME in the directory fd, or undefined when absent. */
export function statAt(dirFd: number, name: string): ReturnType<typeof native.statx> | undefined {
  try {
    return native.statx(dirFd, name, C.AT_SYMLINK_NOFOLLOW);
  } catch (e) {
    if (isNativeError(e) && e.code === 'ENOENT') return undefined;
    throw e;
  }
}

/** Removes NAME from the directory fd, a whole tree if it is a directory. Never follows symlinks. */
export function removeAt(dirFd: number, name: string): void {
  const st = statAt(dirFd, name);
  if (!st) return;
  if ((st.mode & fsc.S_IFMT) !== fsc.S_IFDIR) {
    native.unlinkat(dirFd, name, 0);
    return;
  }
  const sub = native.openat(dirFd, name, fsc.O_RDONLY | C.O_DIRECTORY | C.O_NOFOLLOW | C.O_CLOEXEC, 0);
  try {
    for (const ent of native.getdents(sub)) {
      if (ent.name === '.' || ent.name === '..') continue;
      removeAt(sub, ent.name);
    }
  } finally {
    native.close(sub);
  }
  native.unlinkat(dirFd, name, C.AT_REMOVEDIR);
}

/** The magic-link path of NAME inside an O_PATH directory fd (for the *xattr calls). */
export const procPath = (dirFd: number, name?: string): string =>
  name === undefined ? `/proc/self/fd/${dirFd}` : `/proc/self/fd/${dirFd}/${name}`;
