/**
 * Writing into a layer directory without ever leaving it (the graph driver's ApplyDiff,
 * and any other writer of a layer outside a mount).
 *
 * Names come from whoever built the image. Every directory is opened from the layer's
 * root fd with openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS): a `..` component, an
 * absolute symlink or a relative one that climbs out of the layer fails (EXDEV) instead
 * of reaching the host. The last component is then created or changed with *at() calls
 * on that directory fd, none of which follow a final symlink.
 *
 * Names here are byte strings (index.ts): each JS char is one byte.
 */
import { constants as fsc } from 'node:fs';
import { native, C, isNativeError } from '../native';
import { StratafsError } from '../errors';
import { procFdPath, tryStatAt } from './access';
import { makeWhiteout } from './whiteout';

const BENEATH = C.RESOLVE_BENEATH | C.RESOLVE_NO_MAGICLINKS;
const DIR_PATH = C.O_PATH | C.O_DIRECTORY | C.O_CLOEXEC;

/** A byte string shown to a person. */
const shown = (b: string): string => Buffer.from(b, 'latin1').toString('utf8');

export interface LayerWriterOptions {
  /** the error for a path that is refused (leaves the layer, not a directory); default STRATAFS_ERR_LAYER */
  error?: (message: string) => Error;
}

export class LayerWriter {
  readonly fd: number;
  /** directories opened so far, by relative path (closed by close()) */
  private readonly dirs = new Map<string, number>();
  private readonly error: (message: string) => Error;

  /** `root`: the layer directory, a host path as a JS string */
  constructor(readonly root: string, opts: LayerWriterOptions = {}) {
    this.error = opts.error ?? ((m) => new StratafsError('STRATAFS_ERR_LAYER', m));
    this.fd = native.openat(C.AT_FDCWD, Buffer.from(root, 'utf8').toString('latin1'), DIR_PATH, 0);
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
        throw this.error(`"${shown(rel)}" resolves through a symlink that leaves the layer`);
      } else if (e.code === 'ENOTDIR') {
        throw this.error(`"${shown(rel)}" is not a directory in the layer`);
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

/** Removes NAME from the directory fd, a whole tree if it is a directory. Never follows symlinks. */
export function removeAt(dirFd: number, name: string): void {
  const st = tryStatAt(dirFd, name);
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

/** Replaces whatever `name` is in the directory fd by a whiteout (overlay style). */
export function whiteoutAt(dirFd: number, name: string): void {
  removeAt(dirFd, name);
  makeWhiteout(dirFd, name);
}

/** Marks the directory fd (O_PATH) opaque: the layers below contribute nothing to it. */
export function setOpaque(dirFd: number, prefix: string): void {
  native.setxattr(procFdPath(dirFd), `${prefix}opaque`, Buffer.from('y'), 0, true);
}
