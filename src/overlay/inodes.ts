/**
 * The inode table: node ids handed to the kernel, their lookup counts, and where each
 * node lives in the layers.
 *
 * Node ids are never reused during a mount (a counter), so the generation is constant.
 * A node is known by its name in its parent (`parent`, `name`); hard links made through
 * the mount add aliases. Paths are computed from these links on demand, so renaming a
 * directory moves every descendant at once. Where a node exists in the lowers is kept
 * as explicit layer paths (`lowers`), which never change (lowers are read-only) — that
 * is what lets a renamed directory keep merging the lower directory it came from.
 *
 * st_ino policy. A node reports the inode number of its *origin*: the file in the
 * topmost lower it came from (for a merged directory, the topmost lower directory), or
 * its upper file when it was born in the upper. It is fixed when the node is created,
 * so st_ino stays the same across copy-up while the node lives. When the layers are on
 * different devices, inode numbers could collide, so the layer index is folded into the
 * high bits (like kernel overlayfs' xino): ino | index << (64 - bits). On one device no
 * folding is needed and st_ino is the real one. One exception, the kernel's (with
 * index=off): a file whose lower has several links takes the st_ino of its upper copy
 * when it is copied up, since the copy is no longer the lower file's other names.
 *
 * Lower hard links: each name gets its own node (like kernel overlayfs with index=off);
 * both report the same origin st_ino and the lower nlink. Copying up one name breaks the
 * link (the other name still shows the lower file). Upper hard links are one node: a
 * lookup that finds an upper file with several links reuses the live node of that file
 * (found by its identity, `setKey`/`upperNode`), as kernel overlayfs keeps one inode per
 * upper inode — so a change through one name shows at once through the others.
 */
import { constants as fsc } from 'node:fs';
import { E, fail } from '../errors';
import type { Stat } from '../native';
import type { Attr, NodeId } from '../fuse/api';
import type { Layer } from '../layers/access';
import { joinPath } from '../layers/access';
import type { LowerRef } from '../layers/merge';
import type { StatSlot } from './lower-pool';

export const ROOT_ID: NodeId = 1;

/** Where a node exists in one lower layer. */
export type { LowerRef };

/** The xattrs of a lower object, read once (xattr.ts). */
export interface LowerXattrs {
  /** names as stored (may be shared with the lower caches: never changed) */
  disk: readonly string[];
  /** names a user may see (before the trusted.* filter of the caller) */
  shown: string[];
  /** values read so far, by stored name (small ones only) */
  values: Map<string, Buffer>;
}

export interface Alias {
  parent: Node;
  name: string;
}

/** bits of Node.flags */
const UPPER = 1;
const UPPER_XWHITEOUTS = 2;
const METACOPY = 4;
const NO_XATTRS = 8;
const XATTRS_LISTED = 16;

/**
 * One node of the table. A tree walk makes one per entry and keeps it while the kernel
 * does, so a node is kept small (README "What each lever gave"): its flags share one
 * number, its first name is two fields (further names of a hard link are the only
 * array), and a node holds a map of children only once it has one.
 */
export class Node {
  lookups = 0;
  /** open file and directory handles on this node */
  opens = 0;
  /** operations in flight using this node (InodeTable.hold) */
  holds = 0;
  /** the boolean properties below, as bits */
  private flags = 0;
  /** where it exists in the lowers: the merge stack for a directory, the origin for others */
  lowers: LowerRef[];
  /** S_IFMT bits */
  readonly type: number;
  /** st_ino reported (see header; changes only when a lower hard link is copied up) */
  ino: bigint;
  /** the name used to reach it (its first alias); null once it has no name (unlinked) */
  parent: Node | null;
  /** the first alias's name ('' without one) */
  name: string;
  /** names beyond the first (hard links made through the mount), if any */
  private more: Alias[] | null = null;
  /** named children known to the kernel (null: none yet) */
  private kids: Map<string, Node> | null = null;
  /** identity of the topmost real file (statKey), to match a fresh lookup */
  key = '';
  /** the xattrs of its lower object while it is not in the upper (xattr.ts); dropped at copy-up */
  lowerXattrs: LowerXattrs | null = null;
  /**
   * directories: the attributes last reported, so that an open directory whose name
   * went (rmdir, or a rename over it) still answers fstat, with nlink 0, as on kernel
   * overlayfs (the kernel sends that GETATTR without a handle; the directory is gone)
   */
  lastAttr: Attr | undefined = undefined;
  /** pending copy-up of this node (see copyup.ts) */
  copyUp: Promise<unknown> | null = null;
  /**
   * the lower attribute cache's slot of lowers[0] once asked (State.lowerStat); null
   * until then, and again whenever `lowers` is set anew
   */
  lowerSlot: StatSlot | null = null;

  constructor(
    readonly id: NodeId,
    parent: Node | null,
    name: string,
    type: number,
    upper: boolean,
    lowers: LowerRef[],
    ino: bigint,
  ) {
    this.parent = parent;
    this.name = parent === null ? '' : name;
    this.type = type;
    this.upper = upper;
    this.lowers = lowers;
    this.ino = ino;
  }

  private flag(bit: number): boolean {
    return (this.flags & bit) !== 0;
  }

  private setFlag(bit: number, on: boolean): void {
    this.flags = on ? this.flags | bit : this.flags & ~bit;
  }

  /** exists in the upper at upperPath() */
  get upper(): boolean {
    return this.flag(UPPER);
  }

  set upper(v: boolean) {
    this.setFlag(UPPER, v);
  }

  /** for the upper directory: holds xattr whiteouts */
  get upperXwhiteouts(): boolean {
    return this.flag(UPPER_XWHITEOUTS);
  }

  set upperXwhiteouts(v: boolean) {
    this.setFlag(UPPER_XWHITEOUTS, v);
  }

  /**
   * the upper file is a kernel "metacopy" (metadata only, `<prefix>metacopy`); its data
   * is lowers[0]
   */
  get metacopy(): boolean {
    return this.flag(METACOPY);
  }

  set metacopy(v: boolean) {
    this.setFlag(METACOPY, v);
  }

  /**
   * known to have no xattrs a user can see (xattr.ts): every getxattr answers ENODATA
   * without a syscall; cleared when its xattrs may change (setxattr, copy-up)
   */
  get noXattrs(): boolean {
    return this.flag(NO_XATTRS);
  }

  set noXattrs(v: boolean) {
    this.setFlag(NO_XATTRS, v);
  }

  /** xattrs listed once since the last change (xattr.ts): a getxattr goes straight to the file */
  get xattrsListed(): boolean {
    return this.flag(XATTRS_LISTED);
  }

  set xattrsListed(v: boolean) {
    this.setFlag(XATTRS_LISTED, v);
  }

  get isRoot(): boolean {
    return this.id === ROOT_ID;
  }

  /** all names of this node, the one used to reach it first; empty once unlinked */
  get aliases(): readonly Alias[] {
    if (this.parent === null) return [];
    const first = { parent: this.parent, name: this.name };
    return this.more === null ? [first] : [first, ...this.more];
  }

  /** Adds a name: first (the one used to reach it) or after the others. */
  addAlias(parent: Node, name: string, first: boolean): void {
    if (this.parent === null) {
      this.parent = parent;
      this.name = name;
      return;
    }
    const a = first ? { parent: this.parent, name: this.name } : { parent, name };
    if (first) {
      this.parent = parent;
      this.name = name;
    }
    if (this.more === null) this.more = [a];
    else if (first) this.more.unshift(a);
    else this.more.push(a);
  }

  /** Drops the name parent/name, if it is one of this node's. */
  dropAlias(parent: Node, name: string): void {
    if (this.parent === parent && this.name === name) {
      const next = this.more?.shift();
      this.parent = next?.parent ?? null;
      this.name = next?.name ?? '';
    } else if (this.more !== null) {
      this.more = this.more.filter((a) => !(a.parent === parent && a.name === name));
    }
    if (this.more?.length === 0) this.more = null;
  }

  /** Renames the name parent/name to newParent/newName; false when it is not one of this node's. */
  renameAlias(parent: Node, name: string, newParent: Node, newName: string): boolean {
    if (this.parent === parent && this.name === name) {
      this.parent = newParent;
      this.name = newName;
      return true;
    }
    const a = this.more?.find((x) => x.parent === parent && x.name === name);
    if (a === undefined) return false;
    a.parent = newParent;
    a.name = newName;
    return true;
  }

  /** the child known by `name` */
  child(name: string): Node | undefined {
    return this.kids?.get(name);
  }

  setChild(name: string, node: Node): void {
    (this.kids ??= new Map()).set(name, node);
  }

  deleteChild(name: string): void {
    if (this.kids?.delete(name) === true && this.kids.size === 0) this.kids = null;
  }

  get childCount(): number {
    return this.kids?.size ?? 0;
  }

  /** forgets every child (the mount is gone) */
  clearChildren(): void {
    this.kids = null;
  }

  /**
   * path in the merged view == path in the upper ('' for the root). ENOENT for a node
   * that has no name any more (or lies below one that has none): it has no path, and ''
   * would stand for the layer root.
   */
  path(): string {
    if (this.isRoot) return '';
    const p = this.parent ?? fail(E.ENOENT);
    return joinPath(p.path(), this.name);
  }

  /** has no name any more (unlinked, removed, or replaced by another object) */
  get removed(): boolean {
    return !this.isRoot && this.parent === null;
  }

  /** merged directory: more than one layer contributes */
  get merged(): boolean {
    return this.lowers.length + (this.upper ? 1 : 0) > 1;
  }
}

export class InodeTable {
  private readonly nodes = new Map<NodeId, Node>();
  /** upper non-directories by identity (statKey), to find the node of another hard link */
  private readonly byKey = new Map<string, Node>();
  private nextId = ROOT_ID + 1;
  readonly root: Node;

  /** `dropped`: told of each node that leaves the table (its listing goes with it) */
  constructor(root: (id: NodeId) => Node, private readonly dropped: (node: Node) => void = () => undefined) {
    this.root = root(ROOT_ID);
    this.root.lookups = 1;
    this.nodes.set(ROOT_ID, this.root);
  }

  get(id: NodeId): Node | undefined {
    return this.nodes.get(id);
  }

  /** Allocates a node id and registers the node built for it. */
  add(make: (id: NodeId) => Node): Node {
    const node = make(this.nextId++);
    this.nodes.set(node.id, node);
    if (node.parent !== null) node.parent.setChild(node.name, node);
    return node;
  }

  /** Records the identity of the node's topmost real file (see statKey). */
  setKey(node: Node, key: string): void {
    if (this.byKey.get(node.key) === node) this.byKey.delete(node.key);
    node.key = key;
    if (node.upper && node.type !== fsc.S_IFDIR) this.byKey.set(key, node);
  }

  /**
   * The live node whose upper file is `key`, if it still has a name: another name of it
   * is a hard link and must be the same node (one inode, as in kernel overlayfs).
   */
  upperNode(key: string, type: number): Node | undefined {
    const n = this.byKey.get(key);
    if (!n || n.key !== key || n.type !== type || !n.upper || n.parent === null) return undefined;
    return this.nodes.get(n.id) === n ? n : undefined;
  }

  /** Drops the name parent/name from the node (unlink, rename away, overwrite). */
  unlinkName(parent: Node, name: string): void {
    const node = parent.child(name);
    if (!node) return;
    parent.deleteChild(name);
    node.dropAlias(parent, name);
  }

  /** Adds a name to an existing node (hard link). */
  addName(node: Node, parent: Node, name: string): void {
    this.unlinkName(parent, name);
    node.addAlias(parent, name, false);
    parent.setChild(name, node);
  }

  /** Gives a node a name as the one used to reach it (the names of an exchange). */
  putName(node: Node, parent: Node, name: string): void {
    node.addAlias(parent, name, true);
    parent.setChild(name, node);
  }

  /** Moves a name (rename). */
  moveName(node: Node, parent: Node, name: string, newParent: Node, newName: string): void {
    this.unlinkName(newParent, newName);
    if (parent.child(name) === node) parent.deleteChild(name);
    if (!node.renameAlias(parent, name, newParent, newName)) node.addAlias(newParent, newName, true);
    newParent.setChild(newName, node);
  }

  /** Lookup count bookkeeping; a node nobody refers to any more leaves the table. */
  forget(id: NodeId, n: number): void {
    const node = this.nodes.get(id);
    if (!node || node.isRoot) return;
    node.lookups = Math.max(0, node.lookups - n);
    this.maybeDrop(node);
  }

  /**
   * Keeps `node` in the table while an operation uses it. An operation finds nodes by
   * name, possibly new ones the kernel never looked up (0 lookups): without the hold,
   * another operation ending meanwhile could drop it. Returns the node.
   */
  hold(node: Node): Node {
    node.holds += 1;
    return node;
  }

  /** Ends a hold; the node leaves the table when nothing refers to it any more. */
  release(node: Node): void {
    node.holds -= 1;
    this.maybeDrop(node);
  }

  private inUse(node: Node): boolean {
    return node.lookups > 0 || node.opens > 0 || node.holds > 0 || node.isRoot || node.childCount > 0;
  }

  /** Drops the node unless something still refers to it (see inUse). */
  maybeDrop(node: Node): void {
    if (this.inUse(node)) return;
    this.nodes.delete(node.id);
    this.dropped(node);
    if (this.byKey.get(node.key) === node) this.byKey.delete(node.key);
    for (const a of node.aliases) {
      if (a.parent.child(a.name) === node) a.parent.deleteChild(a.name);
      // a parent kept only for this child may go now
      this.maybeDropParent(a.parent);
    }
  }

  private maybeDropParent(parent: Node): void {
    if (!this.inUse(parent) && this.nodes.get(parent.id) === parent) this.maybeDrop(parent);
  }

  get size(): number {
    return this.nodes.size;
  }

  /**
   * The mount is gone: forget every node but the root (which keeps no children), so a
   * reference that outlives the mount (a pending promise, a closure) holds one node,
   * not the tree of the last walk.
   */
  forgetAll(): void {
    this.nodes.clear();
    this.byKey.clear();
    this.root.clearChildren();
    this.nodes.set(ROOT_ID, this.root);
  }
}

/** Identity of a real file, for matching a cached node against a fresh lookup. */
export function statKey(layer: Layer, st: Pick<Stat, 'ino'>): string {
  return `${layer.index}:${st.ino}`;
}
