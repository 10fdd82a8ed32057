/**
 * What containerd is told to mount for a snapshot (see the README, "containerd
 * snapshotter", for why stratafs mounts are made by containerd through mount.fuse3):
 *
 * - no parent: a bind mount of the snapshot's own directory (read-only for a view): a
 *   single layer needs no union, and the base layer of an image is unpacked into it
 *   directly;
 * - a view of a one-layer parent: a read-only bind of that layer (it holds no whiteouts
 *   or overlay marks: it was written through a plain bind);
 * - anything else: `fuse3.stratafs` with the parents as lowerdirs (top first), and for an
 *   active snapshot its directory as upperdir. containerd runs `mount.fuse3`, which runs
 *   `stratafs SOURCE TARGET -o OPTIONS`: one detached stratafs process per mount, which
 *   ends when containerd unmounts it. A view is read-only.
 */
export interface Mount {
  type: string;
  source: string;
  target: string;
  options: string[];
}

export const FUSE_TYPE = 'fuse3.stratafs';

export interface SnapshotDirs {
  /** the snapshot's own files (an upper layer, or a whole layer with no parent) */
  fs: string;
  /** the stratafs work dir, on the same filesystem as `fs` */
  work: string;
}

export function mountsFor(kind: 'ACTIVE' | 'VIEW', own: SnapshotDirs, lowers: string[]): Mount[] {
  const bind = (source: string, ro: boolean): Mount[] => [{ type: 'bind', source, target: '', options: ['rbind', ro ? 'ro' : 'rw'] }];
  if (lowers.length === 0) return bind(own.fs, kind === 'VIEW');
  if (kind === 'VIEW' && lowers.length === 1) return bind(lowers[0], true);
  const options = [`lowerdir=${lowers.join(':')}`];
  if (kind === 'ACTIVE') options.push(`upperdir=${own.fs}`, `workdir=${own.work}`);
  else options.push('ro');
  return [{ type: FUSE_TYPE, source: 'stratafs', target: '', options }];
}
