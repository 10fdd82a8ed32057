/**
 * The real fds behind open files, and how many one mount may hold.
 *
 * One daemon process serves many mounts, and every file a user keeps open there holds a
 * real fd in it. Left alone, one user opening a file 20,000 times filled the process's
 * fd table: every user of every mount then got EMFILE. So:
 *
 * - Read-only opens share one real fd per node, per real file (lower or upper copy) and
 *   per open flags, counted by reference: the daemon only ever reads them with pread (no
 *   file position) and locks stay in the kernel (no POSIX/flock lock negotiation), so
 *   what one handle does through the fd cannot be seen by another. Writable opens get an
 *   fd of their own.
 * - Each mount has a budget of fds for its open files (FdBudget, process-wide): at most
 *   half of what the pool has left after the fds the other mounts hold. A mount at its
 *   budget answers ENFILE to that open only; the others keep theirs. The pool is the
 *   fd limit less what the directory-fd cache of a mount may take (a quarter of the
 *   limit, at most 8,192) and a margin for the device, sockets and copy-up.
 * - When the process table is full anyway (EMFILE/ENFILE from the kernel), the mount's
 *   directory-fd cache gives half its fds back and the open is tried once more; if it
 *   still fails, that request alone gets the error.
 * - A lower file's fd is kept open after its last handle is released (`keep`), so that
 *   the next read-only open of the node (a second `tar`, a build step reading the same
 *   headers) makes no openat and no close: a lower file cannot change, and the key names
 *   the node (ids are never reused in a mount) and the lower data file, so a kept fd is
 *   the fd a new open would get. At most `keptMax` of them per mount, least recently
 *   released closed first; they count in the mount's budget and are the first given
 *   back when it or the process table is full. Dropped when the node leaves the inode
 *   table, when it is copied up (its data is then the upper file's) and at unmount.
 *   Upper files are never kept.
 *
 * State: `State.sharedFds` (key -> { fd, refs, node }), `State.keptFds` (the keys of
 * entries with no handle, least recently released first) and the budget's counts change
 * only on the JS thread, synchronously, so no locking.
 */
import { E, fail, toErrno } from '../errors';
import { native } from '../native';
import type { NodeId } from '../fuse/api';
import type { State } from './state';

/** fds kept out of the pool for the device, sockets, layer roots and copy-up */
const MARGIN = 256;
/** a mount may always hold this many, whatever the others hold */
const MIN_ALLOWANCE = 16;
/** lower-file fds a mount keeps open with no handle at most (and never over a quarter of its allowance) */
export const KEPT_FDS_MAX = 4096;

/** Process-wide: how many open-file fds each mount (an owner object) holds. */
export class FdBudget {
  private readonly held = new Map<object, number>();
  private total = 0;

  constructor(readonly pool: number) {}

  /** the fd pool for a process whose RLIMIT_NOFILE is `limit` */
  static forLimit(limit: number): FdBudget {
    return new FdBudget(Math.max(4 * MIN_ALLOWANCE, limit - Math.min(8192, Math.floor(limit / 4)) - MARGIN));
  }

  heldBy(owner: object): number {
    return this.held.get(owner) ?? 0;
  }

  /** how many fds `owner` may hold now: half of what the others left in the pool */
  allowance(owner: object): number {
    const others = this.total - this.heldBy(owner);
    return Math.max(MIN_ALLOWANCE, Math.floor((this.pool - others) / 2));
  }

  /** one more fd for `owner`, or ENFILE when it is at its allowance */
  take(owner: object): void {
    const mine = this.heldBy(owner);
    if (mine >= this.allowance(owner)) fail(E.ENFILE);
    this.held.set(owner, mine + 1);
    this.total++;
  }

  give(owner: object): void {
    const mine = this.heldBy(owner);
    if (mine <= 0) return;
    if (mine === 1) this.held.delete(owner);
    else this.held.set(owner, mine - 1);
    this.total--;
  }
}

let processBudget: FdBudget | undefined;

/** The budget of this process (made from the fd limit on first use). */
export function fdBudget(): FdBudget {
  return (processBudget ??= FdBudget.forLimit(native.raiseNofileLimit()));
}

/** for tests: a budget of `pool` fds from now on (undefined: from the fd limit again) */
export function setFdBudget(b: FdBudget | undefined): void {
  processBudget = b;
}

function isTableFull(e: unknown): boolean {
  const errno = toErrno(e);
  return errno === E.EMFILE || errno === E.ENFILE;
}

/** opens a real fd; when the process table is full, sheds directory fds and tries once more */
function openOrShed(st: State, open: () => number): number {
  try {
    return open();
  } catch (e) {
    if (!isTableFull(e)) throw e;
    st.dirs.shed();
    dropAllKept(st);
    return open();
  }
}

/**
 * The real fd for a new handle (of node `node`) of the mount: `shareKey` (read-only opens)
 * reuses an fd already open under that key, a kept one included; otherwise (or the first
 * time) `open` makes one, within the mount's budget.
 */
export function acquireFd(st: State, shareKey: string | null, open: () => number, node: NodeId = 0): number {
  if (shareKey !== null) {
    const s = st.sharedFds.get(shareKey);
    if (s) {
      if (s.refs++ === 0) unkeep(st, shareKey, s.node);
      return s.fd;
    }
  }
  const budget = fdBudget();
  try {
    budget.take(st);
  } catch (e) {
    if (st.keptFds.size === 0) throw e;
    closeKept(st, st.keptFds.size);
    budget.take(st);
  }
  let fd: number;
  try {
    fd = openOrShed(st, open);
  } catch (e) {
    budget.give(st);
    throw e;
  }
  if (shareKey !== null) st.sharedFds.set(shareKey, { fd, refs: 1, node });
  return fd;
}

/**
 * Gives back a handle's fd: closes it once no handle uses it, unless `keep` (a lower
 * file of a node still in the table): then it stays open for the node's next open.
 */
export function releaseFd(st: State, fd: number, shareKey: string | undefined, keep = false): void {
  if (shareKey !== undefined) {
    const s = st.sharedFds.get(shareKey);
    if (s && s.fd === fd && --s.refs > 0) return;
    if (s && s.fd === fd) {
      if (keep && !st.closed) {
        st.keptFds.add(shareKey);
        const of = st.keptByNode.get(s.node);
        if (of) of.push(shareKey);
        else st.keptByNode.set(s.node, [shareKey]);
        const max = Math.min(st.keptMax, Math.floor(fdBudget().allowance(st) / 4));
        if (st.keptFds.size > max) closeKept(st, st.keptFds.size - max);
        return;
      }
      st.sharedFds.delete(shareKey);
    }
  }
  fdBudget().give(st);
  native.close(fd);
}

/** Closes the `n` least recently released kept fds. */
function closeKept(st: State, n: number): void {
  for (const key of st.keptFds) {
    if (n-- <= 0) break;
    dropKept(st, key);
  }
}

/** `key` is no longer kept (used again, or closed) */
function unkeep(st: State, key: string, node: NodeId): void {
  st.keptFds.delete(key);
  const of = st.keptByNode.get(node);
  if (!of) return;
  const i = of.indexOf(key);
  if (i >= 0) of.splice(i, 1);
  if (of.length === 0) st.keptByNode.delete(node);
}

function dropKept(st: State, key: string): void {
  const s = st.sharedFds.get(key);
  if (!s || s.refs > 0) {
    st.keptFds.delete(key);
    return;
  }
  unkeep(st, key, s.node);
  st.sharedFds.delete(key);
  fdBudget().give(st);
  native.close(s.fd);
}

/** Closes the kept fds of `node` (it left the table, or its data moved to the upper). */
export function dropKeptOf(st: State, node: NodeId): void {
  const of = st.keptByNode.get(node);
  if (of) for (const key of [...of]) dropKept(st, key);
}

/** Closes every kept fd (unmount, or the process fd table is full). */
export function dropAllKept(st: State): number {
  const n = st.keptFds.size;
  closeKept(st, n);
  return n;
}
