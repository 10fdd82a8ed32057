/**
 * The mount table of our mount namespace, from /proc/self/mountinfo (proc(5)): the one
 * reader of it for the mountpoint check, the remount, the upper-on-FUSE check and the
 * lowers' idmapped check. Read when a mount opens or is remounted, never per request.
 */
import { readFileSync, realpathSync } from 'node:fs';

export interface MountEntry {
  /** mount point */
  point: string;
  /** filesystem type, e.g. ext4, fuse.fuse-overlayfs */
  fstype: string;
  /** per-mount options (rw, nodev, idmapped, ...) */
  options: string[];
}

// mountinfo escapes space, tab, newline and backslash as \ooo
const unescape = (s: string): string => s.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));

/** Every mount, in the table's order (a mount stacked on another comes after it); throws when unreadable. */
export function readMounts(): MountEntry[] {
  return parseMounts(readFileSync('/proc/self/mountinfo', 'latin1'));
}

/** The entries of a mountinfo text. */
export function parseMounts(text: string): MountEntry[] {
  const mounts: MountEntry[] = [];
  for (const line of text.split('\n')) {
    // ID PARENT MAJ:MIN ROOT POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER-OPTIONS
    const f = line.split(' ');
    const sep = f.indexOf('-');
    if (sep < 6) continue;
    mounts.push({ point: unescape(f[4]), fstype: f[sep + 1], options: f[5].split(',') });
  }
  return mounts;
}

/**
 * The mount `dir` is on: the entry whose mount point is the longest prefix of its real
 * path (the last one listed when mounts are stacked); undefined when it cannot be told.
 * `mounts` is a table read already, `resolved` the real path of `dir` resolved already.
 */
export function mountOf(dir: string, mounts?: readonly MountEntry[], resolved?: string): MountEntry | undefined {
  let real: string;
  let table: readonly MountEntry[];
  try {
    real = resolved ?? realpathSync(dir);
    table = mounts ?? readMounts();
  } catch {
    return undefined;
  }
  let best: MountEntry | undefined;
  for (const m of table) {
    const p = m.point;
    const under = p === '/' || real === p || real.startsWith(`${p}/`);
    if (under && p.length >= (best?.point.length ?? 0)) best = m;
  }
  return best;
}

/** The mount exactly at `real` (a real path), the top one when stacked; undefined if none. */
export function mountedAt(real: string, mounts: readonly MountEntry[] = readMounts()): MountEntry | undefined {
  let found: MountEntry | undefined;
  for (const m of mounts) if (m.point === real) found = m;
  return found;
}
