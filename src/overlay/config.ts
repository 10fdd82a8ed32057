/**
 * What a mount is made of: the parsed, validated options the overlay is built from.
 * The CLI (and later the graph driver) produce it; `Overlay.open(config)` consumes it.
 */
import type { CacheLimits } from './cache';
import type { MountEntry } from '../mountinfo';

/**
 * What the mount's start has read already (src/server/mount-server.ts), so opening the
 * layers reads none of it again: the mount table, and the real paths (symlinks
 * resolved) of the directories given, keyed by the path as given. Whatever is absent
 * is read where it is needed.
 */
export interface StartReads {
  mounts?: readonly MountEntry[];
  realPaths?: ReadonlyMap<string, string>;
}

/**
 * One range of a uid/gid mapping: ids [host, host+count) stored in the layers appear as
 * [inside, inside+count) through the mount (`uidmapping=HOST:INSIDE:COUNT`, options.ts).
 */
export interface IdMapRange {
  inside: number;
  host: number;
  count: number;
}

export interface OverlayConfig {
  /** read-only layers, top first (absolute paths) */
  lowerdirs: string[];
  /** writable layer; absent = read-only mount */
  upperdir?: string;
  /** scratch dir on the same filesystem as upperdir; required with upperdir */
  workdir?: string;
  /**
   * Namespace of the private overlay xattrs: 'trusted.overlay.' when running as root
   * (kernel overlayfs compatible), 'user.overlay.' otherwise (kernel's userxattr).
   */
  xattrPrefix: 'trusted.overlay.' | 'user.overlay.';
  /** skip fsync/syncfs (podman's `volatile`): faster, not crash safe */
  volatile: boolean;
  /** uid/gid translation between what the mount shows and what is on disk */
  uidMap?: IdMapRange[];
  gidMap?: IdMapRange[];
  /** every file appears owned by this uid/gid (and new files are created so) */
  squashToUid?: number;
  squashToGid?: number;
  /**
   * chmod, chown, utimens and xattr changes of a lower regular file copy up its
   * metadata only, in kernel overlayfs' metacopy format (data on the first write);
   * such an upper then needs kernel overlayfs with metacopy=on. Default false.
   */
  metacopy?: boolean;
  /**
   * a directory from a lower may be renamed (recorded with a redirect xattr); false:
   * such a rename fails with EXDEV, as kernel overlayfs with redirect_dir=off. Default true.
   */
  redirectDir?: boolean;
  /**
   * the mount is noatime: files are opened O_NOATIME (where the kernel allows: owner or
   * CAP_FOWNER), so the daemon's and passthrough's reads leave the upper's atimes alone
   */
  noatime?: boolean;
  /** bounds of the listing and attribute caches (cache.ts), CACHE_LIMITS where absent */
  caches?: Partial<CacheLimits>;
  /** the mount table and real paths the start has read already */
  startReads?: StartReads;
}
