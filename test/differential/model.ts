// A loose model of the merged tree for the random generator: which paths exist, of what
// kind, which came from a lower layer, and which names once existed (lower names behind
// whiteouts, deleted entries) so that new entries reuse them. The generator asks it for
// paths that exist, paths that are free, and paths that cannot work, and predicts each
// op's outcome from it. It does not follow symlinks, count links or model permissions
// (everything runs as root), so a prediction can be wrong; the run reports how often.

export type Kind = 'file' | 'dir' | 'symlink' | 'fifo' | 'chr' | 'blk';

export interface Entry {
  kind: Kind;
  /** Still the lower layer's entry (not created by an op, not copied up by a change to it). */
  lower: boolean;
  /** Identity for hard links: names with the same ino are one file. */
  ino: number;
  /** user.* xattr names (the ones the generator uses). */
  xattrs: Set<string>;
}

/** An expected outcome: "ok" or an errno code. */
export type Expect = string;

/** The example layers' merged view (fixtures/layers/README.md), without the root. */
const INITIAL: readonly [string, Kind][] = [
  ['bin', 'dir'],
  ['bin/hello', 'file'],
  ['bin/tool', 'file'],
  ['data', 'dir'],
  ['data/big', 'file'],
  ['data/hl-a', 'file'],
  ['data/hl-b', 'file'],
  ['data/issue-abs', 'symlink'],
  ['data/os-link', 'symlink'],
  ['data/tagged', 'file'],
  ['etc', 'dir'],
  ['etc/group', 'file'],
  ['etc/issue', 'file'],
  ['etc/motd', 'file'],
  ['etc/os-release', 'file'],
  ['etc/passwd', 'file'],
  ['home', 'dir'],
  ['home/user', 'dir'],
  ['home/user/.profile', 'file'],
  ['mid-only', 'dir'],
  ['mid-only/file', 'file'],
  ['opaque-me', 'dir'],
  ['opaque-me/new1', 'file'],
  ['play', 'dir'],
  ['play/d1', 'dir'],
  ['play/d1/x', 'file'],
  ['play/d2', 'dir'],
  ['play/d3', 'dir'],
  ['play/f1', 'file'],
  ['play/m1', 'file'],
  ['play/s1', 'symlink'],
  ['play/t1', 'file'],
  ['srv', 'dir'],
  ['srv/shared', 'dir'],
  ['tmp', 'dir'],
  ['usr', 'dir'],
  ['usr/share', 'dir'],
  ['usr/share/doc', 'dir'],
  ['usr/share/doc/pkg-a', 'dir'],
  ['usr/share/doc/pkg-a/NEWS', 'file'],
  ['var', 'dir'],
  ['var/cache', 'dir'],
  ['var/cache/app', 'dir'],
  ['var/cache/app/two', 'file'],
];

/** Names in the lowers that the merged view hides (whiteouts, opaque dirs). */
const INITIAL_GHOSTS: readonly string[] = [
  'play/f2',
  'play/d1/y',
  'play/d3/sub',
  'etc/hostname',
  'data/dangling',
  'usr/share/doc/pkg-b',
  'usr/share/doc/pkg-a/README',
  'usr/share/doc/pkg-a/copyright',
  'opaque-me/old1',
  'opaque-me/old2',
  'opaque-me/sub',
  'var/cache/app/one',
];

/** user.* xattrs in the lowers that the generator's names hit. */
const INITIAL_XATTRS: readonly [string, string][] = [
  ['play/f1', 'user.note'],
  ['play/d1', 'user.dir-note'],
  ['home/user', 'user.dir-note'],
  ['data/tagged', 'user.color'],
  ['data/tagged', 'user.shape'],
];

/** The lower hard link pair. */
const INITIAL_LINKS: readonly (readonly string[])[] = [['data/hl-a', 'data/hl-b']];

export const parentOf = (p: string): string => (p.includes('/') ? p.slice(0, p.lastIndexOf('/')) : '.');
export const depthOf = (p: string): number => (p === '.' ? 0 : p.split('/').length);
/** P is A or below A. */
export const within = (p: string, a: string): boolean => a === '.' || p === a || p.startsWith(`${a}/`);

export class TreeModel {
  readonly entries = new Map<string, Entry>();
  readonly ghosts = new Set<string>();
  #nextIno = 1;

  static initial(): TreeModel {
    const m = new TreeModel();
    m.entries.set('.', { kind: 'dir', lower: true, ino: m.newIno(), xattrs: new Set() });
    for (const [p, kind] of INITIAL) m.entries.set(p, { kind, lower: true, ino: m.newIno(), xattrs: new Set() });
    for (const [p, name] of INITIAL_XATTRS) m.entries.get(p)!.xattrs.add(name);
    for (const group of INITIAL_LINKS) {
      const ino = m.entries.get(group[0])!.ino;
      for (const p of group) m.entries.get(p)!.ino = ino;
    }
    for (const g of INITIAL_GHOSTS) m.ghosts.add(g);
    return m;
  }

  /** The initial tree as "kind path" lines (checked against the oracle in harness.test.ts). */
  static initialListing(): string[] {
    return ['dir .', ...INITIAL.map(([p, k]) => `${k} ${p}`)].sort();
  }

  newIno(): number {
    return this.#nextIno++;
  }

  get(p: string): Entry | undefined {
    return this.entries.get(p);
  }

  paths(filter: (p: string, e: Entry) => boolean = () => true): string[] {
    const out: string[] = [];
    for (const [p, e] of this.entries) if (p !== '.' && filter(p, e)) out.push(p);
    return out;
  }

  children(dir: string): string[] {
    return this.paths((p) => parentOf(p) === dir);
  }

  isEmptyDir(p: string): boolean {
    return this.get(p)?.kind === 'dir' && this.children(p).length === 0;
  }

  /** Names sharing P's inode (P included). */
  linksOf(p: string): string[] {
    const e = this.get(p);
    return e === undefined ? [] : this.paths((_q, f) => f.ino === e.ino && f.kind !== 'dir');
  }

  /** Why P's parent cannot be walked (ENOENT, ENOTDIR), or undefined when it can. */
  parentError(p: string): Expect | undefined {
    const parts = p.split('/');
    for (let i = 1; i < parts.length; i++) {
      const e = this.get(parts.slice(0, i).join('/'));
      if (e === undefined) return 'ENOENT';
      if (e.kind === 'symlink') return undefined; // not modelled: let the op decide
      if (e.kind !== 'dir') return 'ENOTDIR';
    }
    return undefined;
  }

  /** What looking up P gives: "ok" when it exists, else the errno. */
  lookup(p: string): Expect {
    return this.parentError(p) ?? (this.entries.has(p) ? 'ok' : 'ENOENT');
  }

  /** Add a new entry at P (its parent exists). */
  add(p: string, kind: Kind, ino = this.newIno()): void {
    this.entries.set(p, { kind, lower: false, ino, xattrs: new Set() });
    this.ghosts.delete(p);
  }

  /** Remove P and everything below it; the names become ghosts. */
  remove(p: string): void {
    for (const q of [...this.entries.keys()]) {
      if (within(q, p)) {
        this.entries.delete(q);
        this.ghosts.add(q);
      }
    }
  }

  /**
   * A change to the file at P: a lower file is copied up, which (index=off) separates it
   * from the other names of a lower hard link.
   */
  touch(p: string): void {
    const e = this.get(p);
    if (e === undefined || !e.lower) return;
    e.lower = false;
    if (e.kind !== 'dir' && this.linksOf(p).length > 1) e.ino = this.newIno();
  }

  /** Move the subtree at FROM to TO (TO's old subtree is removed first). */
  move(from: string, to: string): void {
    const moved: [string, Entry][] = [];
    for (const [q, e] of this.entries) if (within(q, from)) moved.push([q, e]);
    this.remove(to);
    for (const [q] of moved) {
      this.entries.delete(q);
      this.ghosts.add(q);
    }
    for (const [q, e] of moved) {
      const dest = to + q.slice(from.length);
      this.entries.set(dest, e);
      this.ghosts.delete(dest);
    }
  }

  /** Swap the subtrees at A and B (renameat2 RENAME_EXCHANGE). */
  exchange(a: string, b: string): void {
    const take = (root: string): [string, Entry][] => {
      const out: [string, Entry][] = [];
      for (const [q, e] of this.entries) if (within(q, root)) out.push([q.slice(root.length), e]);
      for (const [rest] of out) this.entries.delete(root + rest);
      return out;
    };
    const ta = take(a);
    const tb = take(b);
    for (const [rest, e] of ta) this.entries.set(b + rest, e);
    for (const [rest, e] of tb) this.entries.set(a + rest, e);
  }

  /**
   * The outcome of rename(FROM, TO) with renameat2 FLAGS, applied to the model when it is
   * "ok". POSIX rules plus the kernel's order of checks, as far as the model knows them.
   */
  rename(from: string, to: string, flags: readonly string[] = []): Expect {
    const pf = this.parentError(from) ?? this.parentError(to);
    if (pf) return pf;
    const src = this.get(from);
    if (src === undefined) return 'ENOENT';
    if (flags.includes('whiteout')) return 'EINVAL'; // overlayfs accepts only NOREPLACE and EXCHANGE
    const dst = this.get(to);
    if (flags.includes('exchange')) {
      if (dst === undefined) return 'ENOENT';
      if (from === to) return 'ok';
      if (within(to, from) || within(from, to)) return 'EINVAL';
      this.exchange(from, to);
      this.touch(to);
      this.touch(from);
      return 'ok';
    }
    if (dst !== undefined && flags.includes('noreplace')) return 'EEXIST';
    if (from === to) return 'ok';
    if (within(to, from)) return 'EINVAL';
    if (dst !== undefined) {
      if (within(from, to)) return 'ENOTEMPTY';
      if (src.kind === 'dir' && dst.kind !== 'dir') return 'ENOTDIR';
      if (src.kind !== 'dir' && dst.kind === 'dir') return 'EISDIR';
      if (dst.kind === 'dir' && !this.isEmptyDir(to)) return 'ENOTEMPTY';
      if (src.kind !== 'dir' && src.ino === dst.ino) return 'ok'; // two names of one file: nothing happens
    }
    this.move(from, to);
    return 'ok';
  }

  /** set/remove/get of a user.* xattr NAME on P (P exists). */
  xattr(p: string, call: 'set' | 'remove' | 'get', name: string): Expect {
    const e = this.get(p)!;
    if (e.kind !== 'file' && e.kind !== 'dir') return call === 'get' ? 'ENODATA' : 'EPERM';
    if (call === 'set') {
      e.xattrs.add(name);
      this.touch(p);
      return 'ok';
    }
    if (!e.xattrs.has(name)) return 'ENODATA';
    if (call === 'remove') {
      e.xattrs.delete(name);
      this.touch(p);
    }
    return 'ok';
  }
}
