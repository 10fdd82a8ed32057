/**
 * The union filesystem of stratafs: `Overlay` implements the inode-numbered
 * FileSystemApi over the layers of an OverlayConfig. This file only composes the
 * modules; each concept lives in its own (see the header of each):
 *
 *   mount.ts     validation, layer roots, staging dir     readdir.ts  merged listings
 *   inodes.ts    node table, st_ino policy                lookup.ts   the merged lookup
 *   attr.ts      Stat -> Attr                             copyup.ts   copy-up
 *   namespace.ts create/mkdir/.../unlink/rmdir            rename.ts   rename
 *   setattr.ts   chmod/chown/truncate/utimens             xattr.ts    xattrs
 *   files.ts     file and directory handles               idmap.ts    uid/gid mapping
 *   acl.ts       default ACLs and umask at creation       durable.ts  fsync off the JS thread
 *   cache.ts     layer listings, lower attributes (LRU)
 *   prefetch.ts  read-ahead of lower attributes and listings on the thread pool (READDIRPLUS)
 *
 * The on-disk format (safe fd-relative access, whiteouts, opaque dirs, AUFS marks,
 * redirects, metacopy) is src/layers, shared with the graph driver.
 */
import { constants as fsc } from 'node:fs';
import { E, fail } from '../errors';
import type { Int64 } from '../int64';
import { C, native } from '../native';
import type {
  Attr, Ctx, DirEntryOut, Entry, FileSystemApi, FsStat, NodeId, OpenResult, RenameFlags, SetattrChanges, XattrAnswers,
} from '../fuse/api';
import { entryOf, getAttr, toAttr } from './attr';
import type { LayerCache } from './cache';
import type { OverlayConfig } from './config';
import * as files from './files';
import { knownLowerChild, nodeFor, resolve, type FoundLower } from './lookup';
import { closeState, openState } from './mount';
import * as ns from './namespace';
import { rename } from './rename';
import { setattr } from './setattr';
import { prefetchLookups } from './prefetch';
import type { State } from './state';
import * as xattr from './xattr';
import { processIsHostAdmin } from '../privilege';

export type { OverlayConfig } from './config';

export class Overlay implements FileSystemApi {
  private constructor(private readonly st: State) {}

  /** Validates the configuration (StratafsError on a bad one) and opens the layers. */
  static async open(config: OverlayConfig): Promise<Overlay> {
    return new Overlay(openState(config));
  }

  /** number of nodes in the inode table (for tests and statistics) */
  get nodeCount(): number {
    return this.st.inodes.size;
  }

  init(opts: { passthrough: boolean; writebackCache: boolean }): void {
    this.st.passthrough = opts.passthrough;
    this.st.writebackCache = opts.writebackCache;
  }

  setInvalidator(invalidate: (node: NodeId) => void): void {
    this.st.invalidate = invalidate;
  }

  setXattrAnswers(answer: XattrAnswers): void {
    this.st.xattrAnswers = answer;
  }

  /** Runs an operation that may change the upper (copy-up, names, marks): see cache.ts. */
  private changing<T>(op: () => Promise<T>): Promise<T> {
    return this.st.caches.changingUpper(op);
  }

  /** sizes of the listing and attribute caches (for tests and statistics) */
  get cacheSizes(): LayerCache['sizes'] {
    return this.st.caches.sizes;
  }

  destroy(): void {
    closeState(this.st);
  }

  lookup(_ctx: Ctx, parent: NodeId, name: string): Entry | null {
    const p = this.st.node(parent);
    const known = knownLowerChild(p, name);
    if (known !== null) return entryOf(this.st, known);
    const r = resolve(this.st, p, name);
    if (r === null) return null;
    // the stat the resolution made is the node's: no second statx
    return entryOf(this.st, nodeFor(this.st, p, name, r), r.upper ?? (r.lowers[0] as FoundLower).stat);
  }

  forget(node: NodeId, nlookup: number): void {
    this.st.inodes.forget(node, nlookup);
  }

  getattr(_ctx: Ctx, node: NodeId, fh?: number): Attr {
    const n = this.st.node(node);
    const h = fh === undefined ? undefined : this.st.handles.get(fh);
    // through the handle's own fd (works after unlink); not for a metacopy file's data fd
    if (h && h.kind === 'file' && (h.upper || !n.upper)) return toAttr(this.st, n, native.statx(h.fd, '', C.AT_EMPTY_PATH));
    // an open directory without a name: what its upper directory was, with no links left
    // (one only in a lower is still there, and answers below, as on kernel overlayfs).
    // Not only while a handle is open: the kernel opens directories itself when OPENDIR
    // is not sent, and asks for a removed one only while something holds it.
    if (n.removed && n.upper && n.type === fsc.S_IFDIR && n.lastAttr) return { ...n.lastAttr, nlink: 0 };
    return getAttr(this.st, n);
  }

  setattr(ctx: Ctx, node: NodeId, changes: SetattrChanges): Promise<Attr> {
    return this.changing(() => setattr(this.st, ctx, this.st.node(node), changes));
  }

  readlink(_ctx: Ctx, node: NodeId): string {
    const n = this.st.node(node);
    if (n.type !== fsc.S_IFLNK) fail(E.EINVAL);
    const loc = this.st.locate(n);
    return native.readlinkat(loc.dirfd, loc.name);
  }

  mknod(ctx: Ctx, parent: NodeId, name: string, mode: number, rdevMajor: number, rdevMinor: number): Promise<Entry> {
    return this.changing(() => ns.mknod(this.st, ctx, this.st.node(parent), name, mode, rdevMajor, rdevMinor));
  }

  mkdir(ctx: Ctx, parent: NodeId, name: string, mode: number): Promise<Entry> {
    return this.changing(() => ns.mkdir(this.st, ctx, this.st.node(parent), name, mode));
  }

  symlink(ctx: Ctx, parent: NodeId, name: string, target: string): Promise<Entry> {
    return this.changing(() => ns.symlink(this.st, ctx, this.st.node(parent), name, target));
  }

  link(_ctx: Ctx, node: NodeId, newParent: NodeId, newName: string): Promise<Entry> {
    return this.changing(() => ns.link(this.st, this.st.node(node), this.st.node(newParent), newName));
  }

  unlink(_ctx: Ctx, parent: NodeId, name: string): Promise<void> {
    return this.changing(() => ns.unlink(this.st, this.st.node(parent), name));
  }

  rmdir(_ctx: Ctx, parent: NodeId, name: string): Promise<void> {
    return this.changing(() => ns.rmdir(this.st, this.st.node(parent), name));
  }

  rename(_ctx: Ctx, parent: NodeId, name: string, newParent: NodeId, newName: string, flags: RenameFlags): Promise<void> {
    return this.changing(() => rename(this.st, this.st.node(parent), name, this.st.node(newParent), newName, flags));
  }

  open(ctx: Ctx, node: NodeId, flags: number): Promise<OpenResult> | OpenResult {
    // an open for writing copies up
    if (files.isWriteOpen(flags)) return this.st.caches.changingUpper(() => files.openForWrite(this.st, ctx, this.st.node(node), flags));
    return files.openReadOnly(this.st, ctx, this.st.node(node), flags);
  }

  create(ctx: Ctx, parent: NodeId, name: string, mode: number, flags: number): Promise<{ entry: Entry; open: OpenResult }> {
    return this.changing(() => ns.create(this.st, ctx, this.st.node(parent), name, mode, flags));
  }

  read(fh: number, offset: Int64, size: number): Promise<Buffer> {
    return files.read(this.st, fh, offset, size);
  }

  write(fh: number, offset: Int64, data: Buffer): Promise<number> {
    return files.write(this.st, fh, offset, data);
  }

  flush(fh: number): void {
    files.fileHandle(this.st, fh);
  }

  fsync(fh: number, datasync: boolean): Promise<void> {
    return files.fsync(this.st, fh, datasync);
  }

  release(fh: number): void {
    files.release(this.st, fh);
  }

  fallocate(fh: number, mode: number, offset: Int64, length: Int64): void {
    files.fallocate(this.st, fh, mode, offset, length);
  }

  lseek(fh: number, offset: Int64, whence: number): Int64 {
    return files.lseek(this.st, fh, offset, whence);
  }

  copyFileRange(fhIn: number, offIn: Int64, fhOut: number, offOut: Int64, length: Int64): Promise<number> {
    return files.copyFileRange(this.st, fhIn, offIn, fhOut, offOut, length);
  }

  opendir(_ctx: Ctx, node: NodeId): OpenResult {
    return files.opendir(this.st, this.st.node(node));
  }

  /** lists and fsyncs a directory without a handle (fh 0) by its node */
  readonly listsWithoutOpen = true;

  readdir(fh: number, offset: number, dir?: NodeId): DirEntryOut[] {
    return files.readdir(this.st, fh, offset, dir === undefined ? undefined : this.st.node(dir));
  }

  prefetchLookups(dir: NodeId, entries: readonly DirEntryOut[], fits?: number): Promise<void> | undefined {
    const n = this.st.inodes.get(dir);
    return n === undefined ? undefined : prefetchLookups(this.st, n, entries, fits);
  }

  releasedir(fh: number): void {
    files.releasedir(this.st, fh);
  }

  fsyncdir(fh: number, datasync: boolean, dir?: NodeId): Promise<void> {
    return files.fsyncdir(this.st, fh, datasync, dir === undefined ? undefined : this.st.node(dir));
  }

  statfs(_ctx: Ctx, _node: NodeId): FsStat {
    const layer = this.st.upper ?? this.st.lowers[0];
    if (!layer) return fail(E.EIO);
    const s = native.fstatfs(layer.rootFd);
    return {
      blocks: s.blocks, bfree: s.bfree, bavail: s.bavail, files: s.files, ffree: s.ffree,
      bsize: s.bsize, namelen: s.namemax, frsize: s.frsize,
    };
  }

  setxattr(_ctx: Ctx, node: NodeId, name: string, value: Buffer, flags: number): Promise<void> {
    return this.changing(() => xattr.setxattr(this.st, this.st.node(node), name, value, flags));
  }

  getxattr(_ctx: Ctx, node: NodeId, name: string): Buffer | null {
    return xattr.getxattr(this.st, this.st.node(node), name);
  }

  listxattr(ctx: Ctx, node: NodeId): string[] {
    return xattr.listxattr(this.st, this.st.node(node), () => processIsHostAdmin(ctx.pid));
  }

  removexattr(_ctx: Ctx, node: NodeId, name: string): Promise<void> {
    return this.changing(() => xattr.removexattr(this.st, this.st.node(node), name));
  }

  access(_ctx: Ctx, node: NodeId, mask: number): void {
    const n = this.st.node(node);
    this.st.stat(n);
    if ((mask & fsc.W_OK) !== 0 && this.st.upper === null) fail(E.EROFS);
  }
}
