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
 * last handle that used it is released.
 *
 * State (all touched synchronously on the JS thread, so no locking):
 * - `backings`: backingId -> { nodeId, key (dev:ino of the real file), openCount }: every
 *   registered backing id and how many handles still use it.
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
}

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
    const current = currentId === undefined ? undefined : this.backings.get(currentId);
    if (currentId !== undefined && current && current.key === key) {
      current.openCount++;
      this.track(r.fh, { nodeId, mode: 'passthrough', backingId: currentId });
      return { fh: r.fh, openFlags: FOPEN.PASSTHROUGH, backingId: currentId };
    }
    if (!current && (this.cached.get(nodeId) ?? 0) > 0) return plain();
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
    this.backings.set(backingId, { nodeId, key, openCount: 1 });
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
      this.backings.delete(h.backingId);
      if (this.current.get(h.nodeId) === h.backingId) this.current.delete(h.nodeId);
      try {
        this.dev.backingClose(h.backingId);
      } catch (e) {
        this.log('passthrough: BACKING_CLOSE %d failed: %s', h.backingId, (e as Error).message);
      }
    }
  }

  /** for tests and debugging */
  stats(): { nodes: number; handles: number; backings: number } {
    return { nodes: this.current.size, handles: this.handles.size, backings: this.backings.size };
  }

  backingOf(nodeId: NodeId): number | undefined {
    return this.current.get(nodeId);
  }
}
