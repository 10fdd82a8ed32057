/**
 * Passthrough registry: decides, per OPEN/CREATE, whether the kernel may use the
 * overlay's real file directly (FOPEN_PASSTHROUGH + backing id), and keeps backing ids
 * registered exactly as long as the kernel can use them.
 *
 * Kernel rules this follows (fs/fuse/iomode.c, passthrough.c):
 * - an inode in passthrough mode has ONE backing file; a passthrough open of the same
 *   inode must name the same registered backing object (the same backing id), a
 *   different one fails the open;
 * - an inode with cached (page-cache) opens cannot enter passthrough mode, and cached
 *   opens are refused while it is in passthrough mode.
 * So: opens of the same real file reuse the node's backing id, and a node that has
 * cached opens does not start passthrough.
 *
 * Our counts lag behind the kernel's: the kernel drops a file's passthrough state at the
 * final close, but its RELEASE reaches us later (asynchronously). So when an open of a
 * node comes with a *different* real file (the upper copy after copy-up) while we still
 * count passthrough handles on the old one, we do not refuse it: it gets a backing id
 * of its own and becomes the node's current backing. If the kernel really still has the
 * old file open in passthrough mode it refuses the open itself (EIO, and it sends a
 * RELEASE we then process); in the common case (`cat f; echo x >> f`) the old handles are
 * already gone in the kernel and the open succeeds. Each backing id is closed when the
 * last handle that used it is released, unless the open said the real file cannot
 * change (`keepBacking`, a lower file): then it stays registered (`kept`) for the node's
 * next open, which then makes no BACKING_OPEN (and its release no BACKING_CLOSE), until
 * the kernel forgets the node, the node's next open names another file (copy-up), or
 * more than `keptMax` are kept (least recently released closed first). What a kept id
 * costs the kernel (fs/fuse/backing.c): the fuse_backing, a reference to the daemon's
 * file and to its credentials; the kernel opens a backing file of its own per FUSE
 * open, on that file's path, with the flags of the caller's open, so one id serves any
 * later open of the node whatever its flags. The kernel frees every id left at the end
 * of the connection.
 *
 * State (all touched synchronously on the JS thread, so no locking):
 * - `backings`: backingId -> { nodeId, key (names the real file), openCount, keep }:
 *   every registered backing id and how many handles still use it.
 * - `kept`: backing ids with no handle left, kept registered, least recently released
 *   first.
 * - `current`: nodeId -> backingId the next passthrough open of the node reuses when it
 *   names the same real file.
 * - `cached`: nodeId -> number of open handles that use the page cache. Protects the
 *   "no passthrough while cached opens exist" rule.
 * - `handles`: fh -> { nodeId, mode, backingId }. Lets RELEASE (which carries only the
 *   fh) find what it must drop.
 */
import { FOPEN } from '../wire/protocol';
import type { NodeId, OpenResult } from '../api';
import type { OpenOut } from '../wire/encode';

export interface PassthroughDevice {
  backingOpen(fd: number): number;
  backingClose(backingId: number): void;
  fileKey(fd: number): string;
}

type HandleMode = 'passthrough' | 'cached' | 'direct';

interface Backing {
  nodeId: NodeId;
  key: string;
  openCount: number;
  /** may stay registered with no handle (OpenResult.keepBacking) */
  keep: boolean;
}

/** backing ids kept registered with no handle, at most (a few hundred bytes of kernel memory and a file reference each) */
export const KEPT_BACKINGS_MAX = 4096;

interface Handle {
  nodeId: NodeId;
  mode: HandleMode;
  backingId: number;
}

export class PassthroughRegistry {
  private readonly backings = new Map<number, Backing>();
  private readonly current = new Map<NodeId, number>();
  private readonly cached = new Map<NodeId, number>();
  private readonly handles = new Map<number, Handle>();
  private readonly kept = new Set<number>();
  /** at most this many kept (tests lower it) */
  keptMax = KEPT_BACKINGS_MAX;
  /** BACKING_OPENs made (statistics) */
  opened = 0;

  constructor(
    private readonly dev: PassthroughDevice,
    /** passthrough was negotiated at INIT */
    public enabled: boolean,
    private readonly log: (fmt: string, ...args: unknown[]) => void = () => undefined,
  ) {}

  /** The open_out for a file OPEN/CREATE result, recording the handle. */
  open(nodeId: NodeId, r: OpenResult): OpenOut {
    let flags = 0;
    if (r.keepCache) flags |= FOPEN.KEEP_CACHE;
    if (r.directIo) flags |= FOPEN.DIRECT_IO;
    const plain = (): OpenOut => {
      if (this.enabled) this.track(r.fh, { nodeId, mode: r.directIo ? 'direct' : 'cached', backingId: 0 });
      return { fh: r.fh, openFlags: flags, backingId: 0 };
    };
    if (!this.enabled || r.backingFd === undefined) return plain();

    let key: string;
    try {
      key = r.backingKey ?? this.dev.fileKey(r.backingFd);
    } catch (e) {
      this.log('passthrough: cannot stat backing fd of node %d: %s', nodeId, (e as Error).message);
      return plain();
    }
    const currentId = this.current.get(nodeId);
    let current = currentId === undefined ? undefined : this.backings.get(currentId);
    // a kept id with no handle: no passthrough open stands, as after a close
    const idle = current !== undefined && current.openCount === 0;
    if (!current || idle) {
      if ((this.cached.get(nodeId) ?? 0) > 0) return plain();
    }
    if (currentId !== undefined && current && current.key === key) {
      if (current.openCount++ === 0) this.kept.delete(currentId);
      this.track(r.fh, { nodeId, mode: 'passthrough', backingId: currentId });
      return { fh: r.fh, openFlags: FOPEN.PASSTHROUGH, backingId: currentId };
    }
    if (currentId !== undefined && idle) {
      // kept for a file the node no longer reads (copied up)
      this.closeKept(currentId);
      current = undefined;
    }
    if (current) {
      this.log('passthrough: node %d now backed by %s (was %s, %d handle(s) not yet released)',
        nodeId, key, current.key, current.openCount);
    }
    let backingId: number;
    try {
      backingId = this.dev.backingOpen(r.backingFd);
    } catch (e) {
      this.log('passthrough: BACKING_OPEN failed for node %d: %s', nodeId, (e as Error).message);
      return plain();
    }
    this.opened++;
    this.backings.set(backingId, { nodeId, key, openCount: 1, keep: r.keepBacking === true });
    this.current.set(nodeId, backingId);
    this.track(r.fh, { nodeId, mode: 'passthrough', backingId });
    return { fh: r.fh, openFlags: FOPEN.PASSTHROUGH, backingId };
  }

  private track(fh: number, h: Handle): void {
    this.handles.set(fh, h);
    if (h.mode === 'cached') this.cached.set(h.nodeId, (this.cached.get(h.nodeId) ?? 0) + 1);
  }

  /** RELEASE of `fh` (or an OPEN whose reply never reached the kernel). */
  release(fh: number): void {
    const h = this.handles.get(fh);
    if (!h) return;
    this.handles.delete(fh);
    if (h.mode === 'cached') {
      const n = (this.cached.get(h.nodeId) ?? 1) - 1;
      if (n > 0) this.cached.set(h.nodeId, n);
      else this.cached.delete(h.nodeId);
    } else if (h.mode === 'passthrough') {
      const b = this.backings.get(h.backingId);
      if (!b || --b.openCount > 0) return;
      if (b.keep && this.current.get(h.nodeId) === h.backingId) {
        this.kept.add(h.backingId);
        if (this.kept.size > this.keptMax) this.closeKept(this.kept.values().next().value as number);
        return;
      }
      this.close(h.backingId, b);
    }
  }

  /**
   * The kernel forgot the node: a backing id kept for it is closed, one still in use
   * (its RELEASE may come after the FORGET) is closed at its last release.
   */
  forget(nodeId: NodeId): void {
    const id = this.current.get(nodeId);
    if (id === undefined) return;
    if (this.kept.has(id)) this.closeKept(id);
    else {
      const b = this.backings.get(id);
      if (b) b.keep = false;
    }
  }

  private closeKept(backingId: number): void {
    this.kept.delete(backingId);
    const b = this.backings.get(backingId);
    if (b) this.close(backingId, b);
  }

  private close(backingId: number, b: Backing): void {
    this.backings.delete(backingId);
    if (this.current.get(b.nodeId) === backingId) this.current.delete(b.nodeId);
    try {
      this.dev.backingClose(backingId);
    } catch (e) {
      this.log('passthrough: BACKING_CLOSE %d failed: %s', backingId, (e as Error).message);
    }
  }

  /**
   * The connection ended: every backing id still registered is closed. The kernel
   * frees them only with the connection, which lives as long as any fd of the device
   * (a daemon serving other mounts may hold it on), and a kept id holds its lower file
   * open, which would keep that filesystem busy.
   */
  end(): void {
    for (const [id, b] of [...this.backings]) this.close(id, b);
    this.kept.clear();
    this.handles.clear();
    this.cached.clear();
  }

  /** backing ids kept registered with no handle (for tests and statistics) */
  get keptCount(): number {
    return this.kept.size;
  }

  /** for tests and debugging */
  stats(): { nodes: number; handles: number; backings: number } {
    return { nodes: this.current.size, handles: this.handles.size, backings: this.backings.size };
  }

  backingOf(nodeId: NodeId): number | undefined {
    return this.current.get(nodeId);
  }
}
