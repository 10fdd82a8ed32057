/**
 * Cache invalidation sent to the kernel (notify messages). Sent later, from a
 * setImmediate (all but invalAttrsNow): a notify written synchronously inside the
 * handler of a related request can deadlock (the kernel holds the inode or directory
 * lock the notify needs until that request is answered). Failures (ENOENT: the kernel no longer knows the inode or
 * name) are normal and only logged.
 */
import { encodeDelete, encodeInvalEntry, encodeInvalInode } from '../wire/notify';
import type { Reply } from '../wire/encode';
import type { NodeId } from '../api';

export class Notifier {
  constructor(
    private readonly write: (bufs: Reply) => void,
    private readonly log: (fmt: string, ...args: unknown[]) => void = () => undefined,
  ) {}

  private later(what: string, bufs: Reply): Promise<boolean> {
    return new Promise((resolve) => {
      setImmediate(() => {
        try {
          this.write(bufs);
          resolve(true);
        } catch (e) {
          this.log('notify %s failed: %s', what, (e as Error).message);
          resolve(false);
        }
      });
    });
  }

  /**
   * Drop the cached attributes of `node` now, synchronously: safe even inside the
   * handler of a request on that node, because an attributes-only INVAL_INODE (offset
   * -1) takes no inode lock and touches no page cache in the kernel. Used where the
   * deferred form would race with the caller's next stat (a copy-up inside OPEN, whose
   * reply carries no attributes). Returns whether the kernel took it.
   */
  invalAttrsNow(node: NodeId): boolean {
    try {
      this.write(encodeInvalInode(node, -1, 0));
      return true;
    } catch (e) {
      this.log('notify inval_inode %d (attributes) failed: %s', node, (e as Error).message);
      return false;
    }
  }

  /** forget the name `name` in directory `parent`; resolves to whether the kernel took it */
  invalEntry(parent: NodeId, name: string): Promise<boolean> {
    return this.later(`inval_entry ${parent}/${name}`, encodeInvalEntry(parent, name));
  }

  /** drop attributes and cached data of `node` (off -1: attributes only; len 0: to the end) */
  invalInode(node: NodeId, off = 0, len = 0): Promise<boolean> {
    return this.later(`inval_inode ${node}`, encodeInvalInode(node, off, len));
  }

  /** `name` (node `child`) was removed from `parent` behind the kernel's back */
  delete(parent: NodeId, child: NodeId, name: string): Promise<boolean> {
    return this.later(`delete ${parent}/${name}`, encodeDelete(parent, child, name));
  }
}
