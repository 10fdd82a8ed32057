/**
 * Disk usage of a snapshot's own files, as containerd's snapshotters count it: bytes as
 * allocated blocks (st_blocks x 512) and inodes, a hard-linked inode once, the top
 * directory included. Symlinks are never followed; the walk stays on the directory's
 * filesystem.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface Usage {
  size: number;
  inodes: number;
}

export function diskUsage(dir: string): Usage {
  const linked = new Set<bigint>();
  const top = fs.lstatSync(dir, { bigint: true });
  const usage: Usage = { size: 0, inodes: 0 };
  const walk = (p: string, st: fs.BigIntStats): void => {
    if (st.nlink > 1n && !st.isDirectory()) {
      if (linked.has(st.ino)) return;
      linked.add(st.ino);
    }
    usage.inodes++;
    usage.size += Number(st.blocks) * 512;
    if (!st.isDirectory() || st.dev !== top.dev) return;
    for (const name of fs.readdirSync(p)) {
      const child = path.join(p, name);
      walk(child, fs.lstatSync(child, { bigint: true }));
    }
  };
  walk(dir, top);
  return usage;
}
