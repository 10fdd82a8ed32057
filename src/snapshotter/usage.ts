/**
 * Disk usage of a snapshot's own files, as containerd's snapshotters count it: bytes as
 * allocated blocks (st_blocks x 512) and inodes, a hard-linked inode once, the top
 * directory included. The walk goes through the layer library, fd-relative from the
 * snapshot's directory: a symlink is never followed, a mount inside is not entered.
 */
import * as fs from 'node:fs';
import { native, C } from '../native';
import { openDirAt, statAt } from '../layers';
import type { Stat } from '../native';

export interface Usage {
  size: number;
  inodes: number;
}

export function diskUsage(dir: string): Usage {
  const linked = new Set<bigint>();
  const usage: Usage = { size: 0, inodes: 0 };
  const rootFd = native.openat(C.AT_FDCWD, dir, fs.constants.O_RDONLY | C.O_DIRECTORY | C.O_NOFOLLOW | C.O_CLOEXEC, 0);
  const top = statAt(rootFd, '');
  const count = (st: Stat): void => {
    usage.inodes++;
    usage.size += Number(st.blocks) * 512;
  };
  const walk = (dirFd: number): void => {
    for (const e of native.getdents(dirFd)) {
      if (e.name === '.' || e.name === '..') continue;
      const st = statAt(dirFd, e.name);
      const isDir = (st.mode & fs.constants.S_IFMT) === fs.constants.S_IFDIR;
      if (!isDir && st.nlink > 1) {
        if (linked.has(st.ino)) continue;
        linked.add(st.ino);
      }
      count(st);
      if (!isDir || st.devMajor !== top.devMajor || st.devMinor !== top.devMinor) continue;
      const fd = openDirAt(dirFd, e.name);
      try {
        walk(fd);
      } finally {
        native.close(fd);
      }
    }
  };
  try {
    count(top);
    walk(rootFd);
  } finally {
    native.close(rootFd);
  }
  return usage;
}
