/**
 * Which mount of our mount namespace a directory is on, from /proc/self/mountinfo: the
 * entry whose mount point is the longest prefix of its real path (the last one listed
 * when mounts are stacked). Read once per layer when a mount opens, never per request.
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

const unescape = (s: string): string => s.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));

/** The mount `dir` is on; undefined when it cannot be told. */
export function mountOf(dir: string): MountEntry | undefined {
  let real: string;
  let text: string;
  try {
    real = realpathSync(dir);
    text = readFileSync('/proc/self/mountinfo', 'latin1');
  } catch {
    return undefined;
  }
  let best: MountEntry | undefined;
  for (const line of text.split('\n')) {
    const f = line.split(' ');
    const sep = f.indexOf('-');
    if (sep < 6) continue;
    // mountinfo escapes space, tab, newline and backslash as \ooo
    const point = unescape(f[4]);
    const under = point === '/' || real === point || real.startsWith(`${point}/`);
    if (under && point.length >= (best?.point.length ?? 0)) {
      best = { point, fstype: f[sep + 1], options: f[5].split(',') };
    }
  }
  return best;
}
