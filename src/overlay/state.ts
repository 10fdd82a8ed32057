/**
 * The state of one mounted overlay, shared by the operation modules: configuration,
 * layers, the directory-fd cache, the inode table, open handles and the staging dir.
 * It holds no policy; the modules do.
 */
import { E, fail } from '../errors';
import type { Stat } from '../native';
import type { DirEntryOut, NodeId, XattrAnswers } from '../fuse/api';
import type { OverlayConfig } from './config';
import { AufsIndex } from '../layers/aufs';
import { CACHE_LIMITS, LayerCache } from './cache';
import { InodeTable, Node } from './inodes';
import { Whiteouts } from '../layers/whiteout';
import { ListingStore, type Collisions } from './dir-cookies';
import { KEPT_FDS_MAX, dropKeptOf } from './handle-fds';
import { DirFds, basenameOf, dirnameOf, statAt, tryStatAt, type Layer } from '../layers/access';

/** lower directories whose AUFS entries are remembered (a few hundred bytes each at most) */
const AUFS_INDEX_DIRS = 16384;

export interface FileHandle {
  kind: 'file';
  fd: number;
  node: Node;
  /** the fd is on the upper file */
  upper: boolean;
  /** the fd is shared with other read-only handles under this key (handle-fds.ts) */
  shareKey?: string;
}

/** an open directory: its listing is the node's (readdir.ts), the handle counts the open */
export interface DirHandle {
  kind: 'dir';
  node: Node;
}

export type Handle = FileHandle | DirHandle;

/** Where the topmost real object of a node is. */
export interface Location {
  layer: Layer;
  /** O_PATH fd of the containing directory (cache-owned, use at once), or the node's own fd (name '') */
  dirfd: number;
  /** name inside dirfd; '' for a layer root and for an open node with no name left (locateOpen) */
  name: string;
}

/** States built and not closed yet in this process (State.close). */
let openCount = 0;

/**
 * How many overlays this process has open. One that serves more than one (`stratafs
 * daemon`, the graph driver) must not block its JS thread on a flush: every other
 * mount's requests would wait for it (copyup.ts, copyFileWhole).
 */
export function openStates(): number {
  return openCount;
}

export class State {
  readonly handles = new Map<number, Handle>();
  /** read-only opens' fds, shared by key, and the node each is of (handle-fds.ts) */
  readonly sharedFds = new Map<string, { fd: number; refs: number; node: NodeId }>();
  /** keys of sharedFds entries kept open with no handle, least recently released first */
  readonly keptFds = new Set<string>();
  /** the kept keys of each node */
  readonly keptByNode = new Map<NodeId, string[]>();
  /** at most this many kept (handle-fds.ts; tests lower it) */
  keptMax = KEPT_FDS_MAX;
  private nextFh = 1;
  private tmpCounter = 0;
  readonly inodes: InodeTable;
  /** AUFS whiteouts and opaque markers of the lower directories met (src/layers/aufs.ts) */
  readonly aufs: AufsIndex;
  /**
   * READDIRPLUS read-ahead (prefetch.ts): the directories a READDIRPLUS listed (a walk
   * is a READDIRPLUS of a child of one), and the read-ahead calls under way by lower
   * directory (layerKey), each removed when done, and by directory the last entry of its
   * listing a batch covered; and the subdirectory names a READDIRPLUS listed, until the
   * walk enters the first of them; `xattrs`: a lower object's xattr names were listed on
   * the JS thread (its first GETXATTR or LISTXATTR found none read ahead), so a walk's
   * read-ahead lists them too, until a directory is listed while the names a read-ahead
   * listed since the last listing of another (`listing`) were not asked of one object
   * (`namesUnasked`), here or of the bridge (`answered`: its count when they were read
   * ahead): a walk that asks none, such as a `find` after one `getfattr`
   */
  readonly readAhead = {
    listed: new WeakSet<Node>(), pending: new Map<string, Promise<void>>(), covered: new WeakMap<Node, DirEntryOut>(),
    subdirs: new WeakMap<Node, { names: string[]; walking: boolean }>(), xattrs: false,
    listing: undefined as Node | undefined, namesUnasked: false, answered: 0,
  };
  /** layer listings and lower attributes (cache.ts) */
  readonly caches: LayerCache;
  /** directory listings being read in pieces, and cookies moved by a hash collision (dir-cookies.ts) */
  readonly listings = new ListingStore();
  readonly cookieCollisions: Collisions = new WeakMap();
  /** makes the whiteouts, all links of one inode (src/layers/whiteout.ts) */
  readonly whiteouts: Whiteouts;
  /** negotiated at init (files.ts adapts open flags to it) */
  passthrough = false;
  writebackCache = false;
  /** closeState ran: the layer fds are closed (their numbers may belong to others now) */
  private isClosed = false;
  /** drops the kernel's cached attributes of a node (setInvalidator, api.ts) */
  invalidate: (node: NodeId) => void = () => undefined;
  /** what the bridge answers of a node's xattrs itself (setXattrAnswers, api.ts; setNoXattrs) */
  xattrAnswers: XattrAnswers = { set: () => undefined, answered: () => 0 };

  constructor(
    readonly config: OverlayConfig,
    readonly upper: Layer | null,
    readonly lowers: Layer[],
    readonly dirs: DirFds,
    /** O_PATH fd of `${workdir}/work`, -1 on a read-only mount */
    readonly workFd: number,
    /** bits of the layer index folded into st_ino; 0 = all layers on one device */
    readonly xinoBits: number,
    root: (id: NodeId) => Node,
  ) {
    this.inodes = new InodeTable(root, (node) => {
      if (node.noXattrs) this.xattrAnswers.set(node.id, false);
      this.listings.drop(node);
      dropKeptOf(this, node.id);
    });
    this.caches = new LayerCache({ ...CACHE_LIMITS, ...config.caches }, lowers, undefined, config.startReads?.mounts);
    this.aufs = new AufsIndex(AUFS_INDEX_DIRS, this.caches);
    this.whiteouts = new Whiteouts(workFd, () => this.tmpName());
    openCount += 1;
  }

  get closed(): boolean {
    return this.isClosed;
  }

  /** Marks the state closed (closeState); false if it was already. */
  markClosed(): boolean {
    if (this.isClosed) return false;
    this.isClosed = true;
    openCount -= 1;
    return true;
  }

  get prefix(): string {
    return this.config.xattrPrefix;
  }

  /** kernel metacopy files in lowers are looked for at every small file (merge.ts) */
  get followMetacopy(): boolean {
    return this.config.metacopy === true;
  }

  get layers(): Layer[] {
    return this.upper ? [this.upper, ...this.lowers] : this.lowers;
  }

  /** st_ino to report for an object of `layer` (see inodes.ts) */
  foldIno(layer: Layer, ino: bigint): bigint {
    if (this.xinoBits === 0) return ino;
    const shift = BigInt(64 - this.xinoBits);
    const mask = (1n << shift) - 1n;
    return (ino & mask) | (BigInt(layer.index) << shift);
  }

  /** a fresh name for an object under construction in the work dir */
  tmpName(): string {
    this.tmpCounter += 1;
    return `#stratafs.${process.pid}.${this.tmpCounter.toString(16)}`;
  }

  /**
   * Sets whether a node has no xattrs a caller can see (Node.noXattrs), and tells the
   * bridge, which then answers the node's GETXATTRs (ENODATA) and LISTXATTRs (no names)
   * itself, as xattr.ts would: stratafs is the only writer of the upper while mounted.
   */
  setNoXattrs(node: Node, none: boolean): void {
    const was = node.noXattrs;
    node.noXattrs = none;
    if (none || was) this.xattrAnswers.set(node.id, none);
  }

  node(id: NodeId): Node {
    return this.inodes.get(id) ?? fail(E.ENOENT);
  }

  /** the upper layer, or EROFS on a read-only mount */
  requireUpper(): Layer {
    return this.upper ?? fail(E.EROFS);
  }

  addHandle(h: Handle): number {
    const fh = this.nextFh++;
    this.handles.set(fh, h);
    h.node.opens += 1;
    return fh;
  }

  handle(fh: number): Handle {
    return this.handles.get(fh) ?? fail(E.EBADF);
  }

  dropHandle(fh: number): Handle | undefined {
    const h = this.handles.get(fh);
    if (!h) return undefined;
    this.handles.delete(fh);
    h.node.opens -= 1;
    this.inodes.maybeDrop(h.node);
    return h;
  }

  /** The upper directory fd of directory node `dir` (which must be in the upper). */
  upperDirFd(dir: Node): number {
    return this.dirs.get(this.requireUpper(), dir.path());
  }

  /** Where the node's topmost real object is (upper first, else its top lower). */
  locate(node: Node): Location {
    if (node.upper) {
      const layer = this.requireUpper();
      if (node.isRoot) return { layer, dirfd: layer.rootFd, name: '' };
      if (node.removed) return this.locateOpen(node);
      const parent = node.parent as Node;
      return { layer, dirfd: this.dirs.get(layer, parent.path()), name: node.name };
    }
    return this.locateLower(node);
  }

  /**
   * A node with no name left (unlinked, or replaced by a rename) that is still open: its
   * upper file through the fd of one of its upper handles (name '' = the fd itself), so
   * that fstat, fchmod, fchown and futimens work, as they do on kernel overlayfs. The
   * kernel sends those without a file handle.
   */
  private locateOpen(node: Node): Location {
    if (node.opens > 0) {
      for (const h of this.handles.values()) {
        if (h.kind === 'file' && h.node === node && h.upper) return { layer: this.requireUpper(), dirfd: h.fd, name: '' };
      }
    }
    fail(E.ENOENT);
  }

  /** Where the node's top lower object is (the data of a metacopy file). */
  locateLower(node: Node): Location {
    const ref = node.lowers[0] ?? fail(E.ENOENT);
    if (ref.path === '') return { layer: ref.layer, dirfd: ref.layer.rootFd, name: '' };
    return { layer: ref.layer, dirfd: this.dirs.get(ref.layer, dirnameOf(ref.path)), name: basenameOf(ref.path) };
  }

  /** Where the node's file data is when it is read from a lower (a lower metacopy file's data below it). */
  locateData(node: Node): Location {
    const top = node.lowers[0] ?? fail(E.ENOENT);
    const ref = top.data ?? top;
    if (ref.path === '') return { layer: ref.layer, dirfd: ref.layer.rootFd, name: '' };
    return { layer: ref.layer, dirfd: this.dirs.get(ref.layer, dirnameOf(ref.path)), name: basenameOf(ref.path) };
  }

  /** statx of the node's topmost real object (a lower one from the cache, cache.ts) */
  stat(node: Node): Stat {
    if (node.upper) {
      const loc = this.locate(node);
      return statAt(loc.dirfd, loc.name);
    }
    return this.lowerStat(node);
  }

  /**
   * statx of the node's top lower object (ENOENT when it has none), through the slot of
   * the lower attribute cache the node keeps (no key built and looked up per call; an
   * emptied slot, one the cache let go, is asked for again: lower-pool.ts StatSlot)
   */
  lowerStat(node: Node): Stat {
    let slot = node.lowerSlot;
    if (slot === null || slot.s === undefined) {
      const ref = node.lowers[0] ?? fail(E.ENOENT);
      slot = this.caches.lowerStatSlot(ref.layer, ref.path, () => {
        const loc = this.locateLower(node);
        return tryStatAt(loc.dirfd, loc.name);
      });
      node.lowerSlot = slot;
    }
    return slot.s ?? fail(E.ENOENT);
  }
}
