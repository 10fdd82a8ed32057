/**
 * Durability without stalling the mount: fsync/fdatasync run on libuv's thread pool
 * (Node's fs.fsync/fs.fdatasync on our raw fds), never on the JS thread, where a flush
 * of a large file would hold up every other request of every mount in the process.
 * With `volatile` nothing is synced (podman's contract: faster, not crash safe).
 */
import * as fs from 'node:fs';
import type { State } from './state';
import { fault } from './faults';

export function syncFd(st: State, fd: number, datasync: boolean): Promise<void> {
  if (st.config.volatile) return Promise.resolve();
  fault('sync');
  return new Promise((resolve, reject) => {
    const done = (e: NodeJS.ErrnoException | null): void => (e ? reject(e) : resolve());
    if (datasync) fs.fdatasync(fd, done);
    else fs.fsync(fd, done);
  });
}
