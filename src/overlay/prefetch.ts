/**
 * Reading ahead in lower directories on the thread pool, for READDIRPLUS.
 *
 * A READDIRPLUS reply looks up every name it lists: in a cold walk each lookup made a
 * statx of the name in every lower that has it, and for a lower subdirectory a listing
 * of it (its AUFS opaque marker, aufs.ts; the walk lists it next anyway), one syscall
 * after the other on the JS thread, each waiting for the disk. Lowers never change
 * under a mount, so before the reply is filled the overlay reads what those lookups
 * will ask for in a few calls on the libuv thread pool (native statxMany and
 * listDirs, which also reads each subdirectory's xattr names: its overlay marks), split so that the pool's threads read in parallel, and keeps the results
 * in the lower caches (cache.ts). The lookups that follow are the ordinary ones and
 * find what they need in memory; what the read-ahead skipped or failed to read (an
 * error, an entry evicted meanwhile) they read themselves, as before.
 *
 * Only lower directories are read ahead and only lower caches are filled: the upper is
 * always read at the moment of the lookup (it changes). Nothing is read when the caches
 * hold it already (a warm walk stays synchronous). Batched, so the JS thread answers
 * other requests while the disk is read; the reply waits for its own read-ahead only.
 */
import { constants as fsc } from 'node:fs';
import createDebug from 'debug';
import { E } from '../errors';
import { C, native, type Stat } from '../native';
import type { DirEntryOut } from '../fuse/api';
import { joinPath } from '../layers/access';
import { AUFS_PREFIX, isAufsName } from '../layers/whiteout';
import type { Node } from './inodes';
import type { State } from './state';

const log = createDebug('stratafs:overlay');

/** pool calls one batch of names is split into at most (libuv's pool has 4 threads by default) */
const POOL_SPLIT = 4;
/** fewest names worth a call of their own */
const MIN_CHUNK = 128;

function chunks<T>(items: T[]): T[][] {
  const size = Math.max(MIN_CHUNK, Math.ceil(items.length / POOL_SPLIT));
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/** statx of `names` in `dirfd`, split over the pool: results in the order of `names` */
async function statMany(dirfd: number, names: string[]): Promise<Array<Stat | number>> {
  const parts = await Promise.all(chunks(names).map((c) => native.statxMany(dirfd, c.join('/'), C.AT_SYMLINK_NOFOLLOW)));
  return parts.flat();
}

/** One lower directory of the node and the names of the batch it holds. */
interface Wanted {
  layer: Node['lowers'][number]['layer'];
  path: string;
  names: string[];
}

/**
 * Reads ahead what the lookups of `entries` (a READDIRPLUS batch of directory `node`)
 * will need from the lowers; undefined when the caches hold it all already. Never
 * rejects: a failure only means the lookups read for themselves.
 */
export function prefetchLookups(st: State, node: Node, entries: readonly DirEntryOut[]): Promise<void> | undefined {
  if (node.removed || node.lowers.length === 0) return undefined;
  const wanted: Wanted[] = [];
  // names a layer above ends the lookup at (a non-directory, an AUFS whiteout): the
  // layers below are not asked for them (merge.ts walkLowers)
  const ended = new Set<string>();
  for (const ref of node.lowers) {
    const names = st.caches.peekLowerNames(ref.layer, ref.path);
    // not listed (a listing larger than the cache's bound): the lookups ask per name
    if (names === null) continue;
    const missing: string[] = [];
    const endsHere: string[] = [];
    for (const e of entries) {
      const n = e.name;
      if (n === '.' || n === '..' || isAufsName(n) || ended.has(n)) continue;
      if (names.has(AUFS_PREFIX + n)) {
        endsHere.push(n); // hidden here and below: no lookup stats it
        continue;
      }
      const type = names.get(n);
      if (type === undefined) continue;
      if (type !== C.DT_DIR && type !== C.DT_UNKNOWN) endsHere.push(n);
      if (!st.caches.hasLowerStat(ref.layer, joinPath(ref.path, n))) missing.push(n);
    }
    for (const n of endsHere) ended.add(n);
    if (missing.length > 0) wanted.push({ layer: ref.layer, path: ref.path, names: missing });
  }
  if (wanted.length === 0) return undefined;
  return Promise.all(wanted.map((w) => readAhead(st, w))).then(
    () => undefined,
    (e: unknown) => log('read-ahead failed: %s', (e as Error).message),
  );
}

/** The statx of the wanted names of one lower directory, then the listings of its subdirectories. */
async function readAhead(st: State, w: Wanted): Promise<void> {
  const fd = st.dirs.tryGet(w.layer, w.path);
  if (fd === null) return;
  const stats = await statMany(fd, w.names);
  const subdirs: string[] = [];
  stats.forEach((s, i) => {
    const name = w.names[i] as string;
    const path = joinPath(w.path, name);
    if (typeof s === 'number') {
      // vanished: a miss, as tryStatAt reads it; any other error is left to the lookup
      if (s === E.ENOENT || s === E.ENOTDIR) st.caches.putLowerStat(w.layer, path, null);
      return;
    }
    st.caches.putLowerStat(w.layer, path, s);
    if ((s.mode & fsc.S_IFMT) === fsc.S_IFDIR && !st.caches.hasLowerListing(w.layer, path)) subdirs.push(name);
  });
  if (subdirs.length === 0) return;
  // the fd taken above may have been evicted meanwhile: take it again
  const again = st.dirs.tryGet(w.layer, w.path);
  if (again === null) return;
  const lists = await Promise.all(chunks(subdirs).map((c) => native.listDirs(again, c.join('/'))));
  lists.flat().forEach((l, i) => {
    if (typeof l !== 'number') st.caches.putLowerListing(w.layer, joinPath(w.path, subdirs[i] as string), l.entries, l.xattrs);
  });
}
