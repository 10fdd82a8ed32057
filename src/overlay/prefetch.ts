/**
 * Reading ahead in lower directories on the thread pool, for READDIRPLUS.
 *
 * A READDIRPLUS reply looks up every name it lists: in a cold walk each lookup made a
 * statx of the name in every lower that has it, and for a lower subdirectory a listing
 * of it (its AUFS opaque marker, aufs.ts; the walk lists it next anyway), one syscall
 * after the other on the JS thread, each waiting for the disk. Lowers never change
 * under a mount, so before the reply is filled the overlay reads what those lookups
 * will ask for in one call on the libuv thread pool (native readAhead: every lower's
 * statx of the batch's names, and the listing and xattr names — overlay marks — of each
 * lower subdirectory; a batch of more than 2 × MIN_CHUNK names is split so that the
 * pool's threads read in parallel), whose one Buffer of results (readahead-result.ts)
 * is decoded straight into what the lower caches keep (cache.ts). The lookups that follow are the ordinary ones and
 * find what they need in memory; what the read-ahead skipped or failed to read (an
 * error, an entry evicted meanwhile) they read themselves, as before.
 *
 * In a walk (a READDIRPLUS of a directory whose parent had one) the read-ahead goes one
 * level further, not waited for: what the READDIRPLUS of each subdirectory of the batch
 * will need (readAheadBelow), one pool call of about MIN_CHUNK names at a time, in
 * order, so that one pool thread reads ahead of the walk; a subdirectory's READDIRPLUS
 * waits for the call that covers it instead of making its own, so small sibling
 * directories share a call. When the walk enters the first subdirectory of a directory,
 * what the READDIRPLUS of the subdirectories of all its subdirectories will need is read
 * ahead with it (withCousins: one call for a run of small cousins, not one per
 * directory that has any); when it enters the first subdirectory of a directory listed
 * outside a walk (the first level of `find` at a mount's root), the read-ahead below
 * that directory starts then, for all its subdirectories, rather than one call of each
 * that its reply waits for. A plain `ls` reads nothing below what it lists (an `ls` of
 * one of the subdirectories it listed is taken for the start of a walk).
 *
 * Only lower directories are read ahead and only lower caches are filled: the upper is
 * always read at the moment of the lookup (it changes). Nothing is read when the caches
 * hold it already (a warm walk stays synchronous). Batched, so the JS thread answers
 * other requests while the disk is read; the reply waits for its own read-ahead only.
 */
import { constants as fsc } from 'node:fs';
import createDebug from 'debug';
import { E } from '../errors';
import { C, native } from '../native';
import type { DirEntryOut } from '../fuse/api';
import { joinPath, layerKey } from '../layers/access';
import { AUFS_PREFIX, isAufsName } from '../layers/whiteout';
import type { Node } from './inodes';
import type { State } from './state';
import { ReadAheadResult } from './readahead-result';

const log = createDebug('stratafs:overlay');

/** pool calls one batch of names is split into at most (libuv's pool has 4 threads by default) */
const POOL_SPLIT = 4;
/** fewest names worth a call of their own: a READDIRPLUS batch is usually one call */
const MIN_CHUNK = 128;
/**
 * most lower directories one call takes: their fds are taken from the dir-fd cache one
 * after the other and used together, so they must all stay in it meanwhile (an LRU of
 * at least 64, mount.ts, keeps the last 32 taken)
 */
const MAX_DIRS = 32;

/** One lower directory of the node and what the batch's lookups need of its names. */
interface Wanted {
  layer: Node['lowers'][number]['layer'];
  path: string;
  names: string[];
  /** per name: C.RA_STAT (its attributes are not kept), C.RA_LIST (a directory whose listing is not kept) */
  wants: number[];
}

/**
 * most names a walk's read-ahead of a batch's subdirectories asks for (their entries'
 * attributes and their own subdirectories' listings), beyond which a subdirectory is
 * left to its own READDIRPLUS
 */
const BELOW_MAX_NAMES = 4096;

/**
 * Reads ahead what the lookups of `entries` (a READDIRPLUS batch of directory `node`)
 * will need from the lowers; undefined when the caches hold it all already. Never
 * rejects: a failure only means the lookups read for themselves.
 *
 * In a walk (the READDIRPLUS of a directory whose parent had one), it also starts,
 * without waiting for it, the read-ahead the READDIRPLUS of each subdirectory of the
 * batch will need (readAheadBelow): the reply of a subdirectory then finds its data read
 * or being read (it waits for that call, `pending`), and a directory of the walk with no
 * subdirectories needs no pool call of its own. A plain `ls` of a directory whose parent
 * was not listed reads nothing below it.
 *
 * `fits`: most entries of the batch (its first ones) the reply can hold. A listing is
 * read a page at a time, each page handed the rest of it: a batch whose first `fits`
 * names an earlier batch covered reads nothing, and the first that reaches past them
 * reads ahead for every name of it not covered yet.
 */
export function prefetchLookups(st: State, node: Node, entries: readonly DirEntryOut[], fits = entries.length): Promise<void> | undefined {
  if (node.removed || node.lowers.length === 0) return undefined;
  const ahead = st.readAhead;
  // another directory listed while no object was asked the xattr names read ahead since
  // the last one, here or of the bridge (which answers those of nodes that have none
  // itself): the walk asks none (`find` or `tar` after one `getfattr`), so its read-ahead
  // lists none from now on (a walk that asks them, the naive diff, asks those of each
  // directory's entries before it lists the next; its next question the JS thread
  // answers turns them on again)
  if (ahead.listing !== node) {
    if (ahead.namesUnasked && st.xattrAnswers.answered() === ahead.answered) ahead.xattrs = false;
    ahead.namesUnasked = false;
    ahead.listing = node;
  }
  // the first subdirectory a walk enters of a directory listed outside one (the first
  // level of `find` at a mount's root): read ahead for it and its siblings together, as
  // a walk does for the subdirectories of each directory it lists, rather than one call
  // per sibling that its reply waits for (the pending call found next covers this one)
  const parent = node.parent;
  const siblings = parent === null ? undefined : ahead.subdirs.get(parent);
  if (parent !== null && siblings !== undefined && !siblings.walking) {
    ahead.subdirs.delete(parent);
    readAheadBelow(st, [{ lowers: parent.lowers, names: siblings.names }]);
  }
  const waiting = pendingFor(st, node.lowers);
  // read ahead for it already under way: what that call did not cover is asked after it
  if (waiting !== undefined) return waiting.then(() => prefetchLookups(st, node, entries, fits));
  // A listing is read in pages, each READDIRPLUS handed the rest of it (up to
  // READDIR_BATCH entries, readdir.ts): the names up to the last one an earlier batch of
  // the same listing covered were read ahead (or found in the caches) then. Only the
  // names after it are looked at; one of those read ahead and since evicted is read by
  // its lookup, as any name the read-ahead missed.
  const seen = ahead.covered.get(node);
  const from = seen === undefined ? 0 : entries.lastIndexOf(seen) + 1;
  // every name this reply can hold was covered: the names after them wait until a page
  // reaches them, and are then read ahead with the rest of that page's batch (one pool
  // call for hundreds of names rather than one for the few each page adds)
  if (from >= Math.min(fits, entries.length)) return undefined;
  if (entries.length > 0) ahead.covered.set(node, entries[entries.length - 1] as DirEntryOut);
  const names: string[] = [];
  for (let i = from; i < entries.length; i++) names.push((entries[i] as DirEntryOut).name);
  const wanted: Wanted[] = [];
  const walking = node.parent !== null && ahead.listed.has(node.parent);
  const own = wantsOf(st, node.lowers, names, wanted, !walking || ahead.xattrs) > 0 ? start(st, wanted, false) : undefined;
  ahead.listed.add(node);
  keepSubdirs(st, node, entries, from, walking);
  if (walking) {
    if (own === undefined) readAheadBelow(st, withCousins(st, node, names));
    else void own.then(() => readAheadBelow(st, withCousins(st, node, names)));
  }
  return own;
}

/**
 * Keeps the names of the subdirectories among `entries` (from index `from`) of `node`
 * (at most BELOW_MAX_NAMES, as readAheadBelow takes no more): when the walk enters the
 * first of them, what it needs below them all is read ahead together (prefetchLookups,
 * withCousins).
 */
function keepSubdirs(st: State, node: Node, entries: readonly DirEntryOut[], from: number, walking: boolean): void {
  let kept = st.readAhead.subdirs.get(node);
  for (let i = from; i < entries.length; i++) {
    const e = entries[i] as DirEntryOut;
    if (e.type !== fsc.S_IFDIR || e.name === '.' || e.name === '..') continue;
    // made at the first subdirectory: a batch of files keeps nothing
    if (kept === undefined) {
      kept = { names: [], walking };
      st.readAhead.subdirs.set(node, kept);
    }
    if (kept.names.length >= BELOW_MAX_NAMES) break;
    kept.names.push(e.name);
  }
}

/**
 * What the read-ahead below walked directory `node` (listing `names`) covers: its own
 * subdirectories and, when it is the first subdirectory of its parent the walk enters,
 * those of its siblings too (in the parent's listing order), whose listings the read-ahead
 * below the parent read. One call then serves a run of small sibling directories (in
 * a Debian rootfs, each of a hundred /usr/share/locale/LANG/ holds one LC_MESSAGES/ of
 * one or two files: a pool call of one or two names each). A sibling whose listing is
 * not in the caches yet adds nothing and is read ahead below when the walk enters it.
 */
function withCousins(st: State, node: Node, names: readonly string[]): Below[] {
  if (node.removed) return [];
  const dirs: Below[] = [{ lowers: node.lowers, names }];
  const parent = node.parent;
  const siblings = parent === null ? undefined : st.readAhead.subdirs.get(parent);
  if (parent === null || siblings === undefined) return dirs;
  st.readAhead.subdirs.delete(parent);
  for (const name of siblings.names) {
    if (name === node.name) continue;
    const stack = stackOf(st, parent.lowers, name);
    if (stack.length === 0) continue;
    const below = namesIn(st, stack);
    if (below.size > 0) dirs.push({ lowers: stack, names: [...below] });
  }
  return dirs;
}

/** The read-ahead calls under way for the lower directories `lowers`, as one promise; undefined when none. */
function pendingFor(st: State, lowers: readonly { layer: Wanted['layer']; path: string }[]): Promise<unknown> | undefined {
  const pending = st.readAhead.pending;
  if (pending.size === 0) return undefined;
  let found: Promise<unknown>[] | undefined;
  for (const ref of lowers) {
    const p = pending.get(layerKey(ref.layer, ref.path));
    if (p !== undefined) (found ??= []).push(p);
  }
  return found === undefined ? undefined : found.length === 1 ? found[0] : Promise.all(found);
}

/**
 * Adds to `wanted` what lookups of `names` in the lower directories `lowers` (a merge
 * stack, top first) need read that the caches lack; returns how many names it added.
 * `xattrs`: the xattr names of the non-directories too, with their statx (a listing
 * outside a walk: `ls -l` asks each file for two xattrs; a walk such as `find` or `tar`
 * asks none, so there they would be read for nothing, unless a lower object's xattrs
 * were asked that no read-ahead had listed: then the caller walks asking them, as the
 * naive diff of containers-storage asks `security.capability` and the list of each entry).
 */
function wantsOf(st: State, lowers: readonly { layer: Wanted['layer']; path: string }[], names: Iterable<string>, wanted: Wanted[],
  xattrs: boolean): number {
  let total = 0;
  // names a layer above ends the lookup at (a non-directory, an AUFS whiteout): the
  // layers below are not asked for them (merge.ts walkLowers)
  const ended = new Set<string>();
  // names a layer above has (as a directory): not the node's top object here (kept only
  // where xattr names are wanted: a walk's read-ahead does not pay for it per name)
  const below = xattrs && lowers.length > 1 ? new Set<string>() : null;
  for (const ref of lowers) {
    const listed = st.caches.peekLowerNames(ref.layer, ref.path);
    // not listed (a listing larger than the cache's bound): the lookups ask per name
    if (listed === null) continue;
    const w: Wanted = { layer: ref.layer, path: ref.path, names: [], wants: [] };
    const endsHere: string[] = [];
    for (const n of names) {
      if (n === '.' || n === '..' || isAufsName(n) || ended.has(n)) continue;
      if (listed.has(AUFS_PREFIX + n)) {
        endsHere.push(n); // hidden here and below: no lookup stats it
        continue;
      }
      const type = listed.get(n);
      if (type === undefined) continue;
      const maybeDir = type === C.DT_DIR || type === C.DT_UNKNOWN;
      if (!maybeDir) endsHere.push(n);
      const path = joinPath(ref.path, n);
      let want = st.caches.hasLowerStat(ref.layer, path) ? 0 : C.RA_STAT;
      // a lookup of a lower subdirectory lists it (its AUFS opaque marker, aufs.ts) and
      // reads its xattr names (its overlay marks); the walk lists it next anyway
      if (maybeDir && !st.caches.hasLowerListing(ref.layer, path)) want |= C.RA_LIST;
      // the first getxattr of a node lists its object's xattr names (`ls -l` asks two
      // of every file, xattr.ts): those of the top object of a non-directory are read
      // here, beside its statx, or alone when its statx was kept without them (a walk
      // that asked none read it; its type is known, so it is not read again); a
      // directory's come with its listing
      if (xattrs && type !== C.DT_DIR && !below?.has(n)) {
        if ((want & C.RA_STAT) !== 0 || st.caches.lowerFileLacksXattrs(ref.layer, path)) {
          want |= C.RA_XATTRS;
          if (!st.readAhead.namesUnasked) {
            st.readAhead.namesUnasked = true;
            st.readAhead.answered = st.xattrAnswers.answered();
          }
        }
      }
      // (a listing names each name once: marking it now cannot hide it in this layer)
      below?.add(n);
      if (want === 0) continue;
      w.names.push(n);
      w.wants.push(want);
    }
    for (const n of endsHere) ended.add(n);
    if (w.names.length > 0) {
      wanted.push(w);
      total += w.names.length;
    }
  }
  return total;
}

/**
 * Starts, not waited for, the read-ahead of the READDIRPLUS of each lower subdirectory
 * named in `names` of each directory `node` of `dirs` (whose own read-ahead is done):
 * the attributes of its entries and the listings of its subdirectories, for at most
 * BELOW_MAX_NAMES names in all (in each lower that has them).
 * A subdirectory is taken in each lower down to the first that ends its merge (a
 * non-directory, an AUFS whiteout); one that a mark makes opaque may be read for
 * nothing, never wrongly: only lower caches are filled, and lowers do not change.
 */
function readAheadBelow(st: State, dirs: readonly Below[]): void {
  try {
    if (st.closed) return;
    const wanted: Wanted[] = [];
    let taken = 0; // names of the subdirectories taken
    for (const dir of dirs) {
      if (taken >= BELOW_MAX_NAMES) break;
      taken = wantsBelow(st, dir, wanted, taken);
    }
    if (wanted.length > 0) void start(st, wanted, true);
  } catch (e) {
    log('read-ahead below %s failed: %s', dirs[0]?.lowers[0]?.path, (e as Error).message);
  }
}

/** A merged directory's lower directories (a merge stack, top first) and names in it. */
interface Below {
  lowers: readonly { layer: Wanted['layer']; path: string }[];
  names: readonly string[];
}

/**
 * The lower directories (top first) of subdirectory `name` of the merged directory of
 * `lowers`, down to the first lower that ends its merge (a non-directory, an AUFS
 * whiteout); empty when it is no lower directory or a listing is not in the caches.
 */
function stackOf(st: State, lowers: Below['lowers'], name: string): { layer: Wanted['layer']; path: string }[] {
  const stack: { layer: Wanted['layer']; path: string }[] = [];
  for (const ref of lowers) {
    const listed = st.caches.peekLowerNames(ref.layer, ref.path);
    if (listed === null || listed.has(AUFS_PREFIX + name)) break;
    const type = listed.get(name);
    if (type === undefined) continue;
    if (type !== C.DT_DIR) break;
    stack.push({ layer: ref.layer, path: joinPath(ref.path, name) });
  }
  return stack;
}

/** The names the caches hold of the merged directory of `stack` (its lower directories, top first). */
function namesIn(st: State, stack: Below['lowers']): Set<string> {
  const names = new Set<string>();
  for (const ref of stack) {
    const listed = st.caches.peekLowerNames(ref.layer, ref.path);
    if (listed !== null) for (const n of listed.keys()) names.add(n);
  }
  return names;
}

/** Adds to `wanted` what the READDIRPLUS of each subdirectory named in `dir` needs; returns `taken` plus their names taken. */
function wantsBelow(st: State, dir: Below, wanted: Wanted[], taken: number): number {
  for (const name of dir.names) {
    if (taken >= BELOW_MAX_NAMES) break;
    if (name === '.' || name === '..' || isAufsName(name)) continue;
    const stack = stackOf(st, dir.lowers, name);
    if (stack.length === 0 || pendingFor(st, stack) !== undefined) continue;
    const below = namesIn(st, stack);
    // one that would pass the bound (a huge directory) is left to its own READDIRPLUS
    if (taken + below.size > BELOW_MAX_NAMES) continue;
    taken += below.size;
    wantsOf(st, stack, below, wanted, st.readAhead.xattrs);
  }
  return taken;
}

/**
 * The pool calls for `wanted`, one per `size` names in order (a call may span several
 * directories); `register`: each directory's calls are kept in `pending` until done.
 */
function start(st: State, wanted: Wanted[], register: boolean): Promise<void> {
  const total = wanted.reduce((n, w) => n + w.names.length, 0);
  // below a walked directory, calls of about MIN_CHUNK names in order: the reply of the
  // first subdirectory waits for its own call, not for the whole read-ahead
  const calls = register
    ? Math.max(1, Math.ceil(total / MIN_CHUNK))
    : Math.min(POOL_SPLIT, Math.max(1, Math.floor(total / MIN_CHUNK)));
  const size = Math.ceil(total / calls);
  const work: Promise<void>[] = [];
  const byDir = register ? new Map<string, Promise<void>[]>() : null;
  let after: Promise<void> = Promise.resolve();
  for (let g = 0, i = 0; g < wanted.length;) {
    const part: Wanted[] = [];
    let left = size;
    while (left > 0 && g < wanted.length && part.length < MAX_DIRS) {
      const w = wanted[g] as Wanted;
      const take = Math.min(left, w.names.length - i);
      part.push(i === 0 && take === w.names.length ? w : { ...w, names: w.names.slice(i, i + take), wants: w.wants.slice(i, i + take) });
      left -= take;
      i += take;
      if (i === w.names.length) {
        g += 1;
        i = 0;
      }
    }
    // below a walked directory one call at a time, in order: one pool thread reads
    // ahead of the walk, without crowding out the disk reads of what the walk does now
    const call = register ? after.then(() => readAhead(st, part)) : readAhead(st, part);
    after = call.then(() => undefined, () => undefined);
    work.push(call);
    if (byDir) {
      for (const w of part) {
        const key = layerKey(w.layer, w.path);
        const list = byDir.get(key);
        if (list) list.push(call);
        else byDir.set(key, [call]);
      }
    }
  }
  const all = Promise.all(work).then(
    () => undefined,
    (e: unknown) => log('read-ahead failed: %s', (e as Error).message),
  );
  if (byDir) {
    const pending = st.readAhead.pending;
    for (const [key, list] of byDir) {
      const done: Promise<void> = (list.length === 1 ? (list[0] as Promise<void>) : Promise.all(list)).then(
        () => undefined,
        () => undefined,
      );
      pending.set(key, done);
      void done.then(() => {
        if (pending.get(key) === done) pending.delete(key);
      });
    }
  }
  return all;
}

/** One pool call for `part`: the statx of its names and the listings of its subdirectories, kept in the lower caches. */
async function readAhead(st: State, part: Wanted[]): Promise<void> {
  if (st.closed) return;
  const asked: Wanted[] = [];
  const fds: number[] = [];
  for (const w of part) {
    const fd = st.dirs.tryGet(w.layer, w.path);
    if (fd === null) continue;
    asked.push(w);
    fds.push(fd);
  }
  if (asked.length === 0) return;
  const wants = new Uint8Array(asked.reduce((n, w) => n + w.names.length, 0));
  let k = 0;
  for (const w of asked) for (const want of w.wants) wants[k++] = want;
  const r = new ReadAheadResult(await native.readAhead(
    Int32Array.from(fds),
    Uint32Array.from(asked, (w) => w.names.length),
    asked.map((w) => w.names.join('/')).join('/'),
    wants,
  ));
  for (const w of asked) {
    for (const name of w.names) {
      const path = joinPath(w.path, name);
      const s = r.stat();
      if (typeof s === 'number') {
        // vanished: a miss, as tryStatAt reads it; any other error is left to the lookup
        if (s === E.ENOENT || s === E.ENOTDIR) st.caches.putLowerStat(w.layer, path, null);
      }
      const l = r.listing();
      if (typeof l === 'object') st.caches.putLowerListing(w.layer, path, l, r.xattrs);
      const x = r.fileXattrs();
      if (typeof s === 'object') st.caches.putLowerStat(w.layer, path, s, x);
      else if (s === undefined && x !== null) st.caches.putLowerFileXattrs(w.layer, path, x);
    }
  }
}
