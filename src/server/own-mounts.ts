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
