/**
 * A process that serves mounts must never access one of them (DESIGN.md, pitfalls): a
 * synchronous call on a path inside it waits for a reply only this process's main
 * thread can send. A server of many mounts is asked for new mounts by other processes,
 * so it checks every path of a new mount (layers, work dir, mountpoint) against the
 * mounts it serves before touching anything: a path that lies inside one of them, as
 * written or once its symlinks are followed, is refused.
 *
 * Symlinks are followed here component by component with lstat/readlink, and a
 * component that reaches a served mountpoint is refused before it is looked at, so the
 * check itself never enters a served mount. (A bind mount of a served mount elsewhere
 * is not seen: such paths are the caller's business.)
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { StratafsError } from '../errors';

/** Enough for any sane chain; more is a loop (the kernel's own limit is 40). */
const MAX_LINKS = 40;

function inside(p: string, served: ReadonlySet<string>): string | undefined {
  for (let cur = p; ; cur = path.dirname(cur)) {
    if (served.has(cur)) return cur;
    if (cur === '/') return undefined;
  }
}

/**
 * Throws STRATAFS_ERR_MOUNTPOINT when absolute path P is, or resolves into, one of the
 * SERVED mountpoints. Paths that do not exist (yet) pass: the mount reports them.
 */
export function checkOutsideServed(what: string, p: string, served: ReadonlySet<string>): void {
  const refuse = (mnt: string): never => {
    throw new StratafsError('STRATAFS_ERR_MOUNTPOINT', `${what} ${p} lies inside ${mnt}, a mount this stratafs process serves (it cannot use its own mounts)`);
  };
  if (served.size === 0) return;
  let rest = path.resolve(p).split('/').filter(Boolean);
  let done = '/';
  let links = 0;
  while (rest.length > 0) {
    const next = path.join(done, rest[0]);
    rest = rest.slice(1);
    const hit = inside(next, served);
    if (hit !== undefined) refuse(hit);
    let target: string;
    try {
      if (!fs.lstatSync(next).isSymbolicLink()) {
        done = next;
        continue;
      }
      target = fs.readlinkSync(next);
    } catch {
      return; // missing or unreadable: nothing further to follow
    }
    if (++links > MAX_LINKS) return;
    rest = [...target.split('/').filter(Boolean), ...rest];
    if (target.startsWith('/')) done = '/';
    // a relative target continues from `done` (the link's directory)
  }
}

/** The directories of one mount a mountpoint must not lie in (symlinks resolved). */
export interface MountDirs {
  mountpoint: string;
  /** [what, real path]: e.g. ['lowerdir', '/layers/a'] */
  dirs: [string, string][];
}

const within = (p: string, dir: string): boolean => p === dir || p.startsWith(dir === '/' ? '/' : `${dir}/`);

/**
 * A mountpoint inside a directory a mount reads by path would be crossed by that mount:
 * it would look a name up through a mount this process serves and wait on itself.
 * Lower layers are read through a clone without submounts where this process may clone
 * trees (src/layers/tree.ts), so they count only without it (`lowersCloned` false); the
 * upper and work dirs always count. Throws STRATAFS_ERR_MOUNTPOINT (one line) when the
 * NEW mount's mountpoint lies in such a directory of a SERVED mount or of itself, or a
 * served mountpoint lies in one of the new mount's.
 */
export function checkNotCrossed(next: MountDirs, served: readonly MountDirs[], lowersCloned: boolean): void {
  const counts = ([what]: [string, string]): boolean => !lowersCloned || what !== 'lowerdir';
  const why = lowersCloned ? '' : ' (lower layers are read without crossing mounts only with CAP_SYS_ADMIN: open_tree)';
  for (const m of [next, ...served]) {
    for (const [what, dir] of m.dirs.filter(counts)) {
      if (within(next.mountpoint, dir)) {
        const whose = m === next ? 'its own' : `the ${m.mountpoint} mount's`;
        throw new StratafsError('STRATAFS_ERR_MOUNTPOINT', `mountpoint ${next.mountpoint} lies inside ${whose} ${what} ${dir}: this process would have to read its own mount there${why}`);
      }
    }
  }
  for (const [what, dir] of next.dirs.filter(counts)) {
    const hit = served.find((m) => within(m.mountpoint, dir));
    if (hit) {
      throw new StratafsError('STRATAFS_ERR_MOUNTPOINT', `${what} ${dir} holds ${hit.mountpoint}, a mount this stratafs process serves: it would have to read its own mount there${why}`);
    }
  }
}
