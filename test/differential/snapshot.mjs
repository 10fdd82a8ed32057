// Snapshot of a directory tree for the differential tests: one record per path, taken
// with lstat (symlinks are never followed), compared field by field between targets.
//
// Two kinds:
// - "merged": what a user sees through a mount. Every xattr is kept; a private overlay
//   xattr (any NAMESPACE.overlay.*) must never be visible and is reported in
//   `leaks`.
// - "upper": the raw upper layer after unmount, which must be what kernel overlayfs
//   writes. Whiteouts appear as char devices 0/0, and trusted.overlay.opaque is compared
//   by value. Some items are deliberately not compared; each is listed in UPPER_IGNORED
//   with the reason.
import { createHash } from 'node:crypto';
import { lstatSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { dumpTreeXattrs } from './xattr-tools.mjs';

/** Upper-layer xattrs left out of the comparison, and why. */
export const UPPER_IGNORED = {
  // Encodes a file handle of the lower inode (fs uuid + inode + generation): differs per
  // copy of the layers and is an optimisation for inode numbers / index lookups.
  'trusted.overlay.origin': 'file handle of the lower inode; differs between layer copies',
  // Marks a dir whose children may have origins (inode number consistency for readdir);
  // a cache hint, not part of the merged view.
  'trusted.overlay.impure': 'readdir d_ino cache hint, not part of the merged view',
  // index=on bookkeeping: hard link counts kept in the index, the layer uuid, the
  // upper-of-index back pointer. The index directory itself lives in workdir.
  'trusted.overlay.nlink': 'index=on bookkeeping',
  'trusted.overlay.uuid': 'per-mount layer uuid (index/nfs_export bookkeeping)',
  'trusted.overlay.upper': 'index=on back pointer from index entries',
};

/**
 * Redirects are compared by presence only: the kernel writes a relative name when the
 * parent did not change and an absolute path otherwise; any redirect that resolves to the
 * same lower directory is equally valid, so the value is normalised to "<redirect>".
 */
export const REDIRECT_XATTR = 'trusted.overlay.redirect';

const PRIVATE_XATTR = /^[a-z]+\.overlay\./;

function fileType(st) {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'dir';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isCharacterDevice()) return 'chr';
  if (st.isBlockDevice()) return 'blk';
  if (st.isFIFO()) return 'fifo';
  if (st.isSocket()) return 'sock';
  return 'unknown';
}

function sha256(path) {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

/** major:minor of a Linux dev_t (glibc encoding). */
export function devString(rdev) {
  const major = ((rdev >> 8) & 0xfff) | (Math.floor(rdev / 2 ** 32) & ~0xfff);
  const minor = (rdev & 0xff) | ((rdev >> 12) & 0xfff00);
  return `${major}:${minor}`;
}

/**
 * An mtime as compared: "SEC.NSEC" when it is far from now (set on purpose: the example
 * layers get fixed times, see syscalls.py fixtimes, and utimens ops pick times decades
 * away), else "recent" (set by the filesystem while the ops ran, which differs between
 * targets by the time the runs are apart). Copy-up must keep the first kind exactly.
 */
export function timeField(ns) {
  const now = BigInt(Date.now()) * 1_000_000n;
  const diff = ns > now ? ns - now : now - ns;
  if (diff < RECENT_NS) return 'recent';
  const sec = ns / 1_000_000_000n - (ns < 0n && ns % 1_000_000_000n !== 0n ? 1n : 0n);
  const nsec = ns - sec * 1_000_000_000n;
  return `${sec}.${nsec.toString().padStart(9, '0')}`;
}
const RECENT_NS = 24n * 3600n * 1_000_000_000n;

/**
 * The record compared for one path (shared with the agent's `stat` op), from an lstat
 * with { bigint: true }. atime and ctime are left out: reads move atime (and relatime
 * makes that depend on timing), and every change moves ctime.
 */
export function describe(path, st) {
  const type = fileType(st);
  const rec = { type, mode: Number(st.mode & 0o7777n).toString(8), uid: Number(st.uid), gid: Number(st.gid), nlink: Number(st.nlink) };
  if (type !== 'dir') rec.size = Number(st.size);
  if (type === 'file') rec.sha256 = sha256(path);
  if (type === 'symlink') rec.target = readlinkSync(path);
  if (type === 'chr' || type === 'blk') rec.rdev = devString(Number(st.rdev));
  rec.mtime = timeField(st.mtimeNs);
  return rec;
}

/**
 * Walk ROOT and return { kind, entries: { relPath: record }, leaks: [...] }.
 * relPath is "." for the root. Hard links: every non-directory with nlink > 1, and every
 * entry whose inode number another walked path shares, gets `linkGroup`, the first path
 * (in sorted walk order) with the same inode. So two different files reported with one
 * inode number (which makes tar, cp -a and du treat them as hard links) show up too.
 */
export function snapshot(root, kind) {
  const entries = {};
  const leaks = [];
  /** dev:ino -> paths with it, in walk order. */
  const inodes = new Map();
  const xattrs = dumpTreeXattrs(root);

  const visit = (rel) => {
    const abs = rel === '.' ? root : join(root, rel);
    let st;
    let rec;
    try {
      st = lstatSync(abs, { bigint: true });
      rec = describe(abs, st);
    } catch (e) {
      // Listed by readdir but not usable (e.g. ENOENT from lookup, EIO from a read):
      // recorded, so that the comparison shows it instead of the walk stopping.
      entries[rel] = { type: 'error', error: String(e?.code ?? e) };
      return;
    }
    if (kind === 'upper' && rec.type === 'chr' && rec.rdev === '0:0') {
      // A whiteout is compared by its form only: its mode and owner carry no meaning
      // (the kernel makes it mode 0000 via RENAME_WHITEOUT or mknod), and its link count
      // neither: the kernel may hard-link all whiteouts to one shared inode in workdir.
      rec = { type: 'whiteout(chr 0:0)' };
    } else {
      const key = `${st.dev}:${st.ino}`;
      const group = inodes.get(key) ?? [];
      group.push(rel);
      inodes.set(key, group);
    }
    const attrs = xattrs.get(abs) ?? xattrs.get(abs.replace(/\/$/, '')) ?? {};
    const kept = {};
    for (const name of Object.keys(attrs).sort()) {
      if (kind === 'merged') {
        if (PRIVATE_XATTR.test(name)) leaks.push(`${rel}: ${name}`);
        kept[name] = attrs[name];
      } else if (name in UPPER_IGNORED) {
        continue;
      } else {
        kept[name] = name === REDIRECT_XATTR ? '<redirect>' : attrs[name];
      }
    }
    if (Object.keys(kept).length > 0) rec.xattrs = kept;
    entries[rel] = rec;
    if (rec.type === 'dir') {
      for (const name of readdirSync(abs).sort()) visit(rel === '.' ? name : `${rel}/${name}`);
    }
  };
  visit('.');
  for (const group of inodes.values()) {
    for (const rel of group) {
      const rec = entries[rel];
      if (group.length > 1 || (rec.type !== 'dir' && rec.nlink > 1)) rec.linkGroup = group[0];
    }
  }
  return { kind, entries, leaks };
}
