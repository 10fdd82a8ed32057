/**
 * ApplyDiff: unpacks an uncompressed layer tar into a layer's diff dir, in the overlay
 * on-disk format.
 *
 * - `.wh.NAME` (OCI/Docker whiteout) becomes a 0/0 character device NAME;
 *   `.wh..wh..opq` makes its directory opaque (`<prefix>opaque=y`). Other `.wh..wh.*`
 *   names are AUFS bookkeeping and are skipped.
 * - Ownership, modes (setuid bits included), mtimes, xattrs (PAX SCHILY.xattr.*), hard
 *   links, device nodes, fifos and symlinks are kept. Private overlay xattrs in the tar
 *   are dropped: a layer must not forge redirects or opaque marks any other way.
 * - Every path is resolved beneath the layer root (src/layers/writer.ts): `..` names
 *   and writes through symlinks that leave the layer are refused with an error.
 * - Directory times are set once all entries are in (writing into a dir changes them).
 * - GNU sparse files (old GNU 'S', PAX 0.0/0.1/1.0) are written with their holes
 *   (sparse.ts); a map that does not add up, an unknown sparse version or an unknown
 *   entry type fails the import.
 *
 * Names and xattrs are byte exact: member names are read as latin1 byte strings, and PAX
 * records (path, linkpath, SCHILY.xattr.*) are read as raw bytes by pax.ts, since the
 * tar library decodes them as UTF-8 text and would lose binary xattr values
 * (security.capability, ACLs) and names that are not UTF-8.
 */
import * as fs from 'node:fs';
import { promisify } from 'node:util';
import type { Readable } from 'node:stream';
import * as tar from 'tar-stream';
import createDebug from 'debug';
import { native, C, isNativeError } from '../native';
import { LayerWriter, procFdPath, removeAt, setOpaque, tryStatAt, whiteoutAt, isOverlayNamespace, AUFS_OPAQUE, AUFS_PREFIX } from '../layers';
import { components, shown, tarError } from './tar-names';
import { PaxTap, type PaxRecords } from './pax';
import { SPARSE_NAME, sparseOf, writeSparse } from './sparse';

const log = createDebug('stratafs:graphdriver:tar');
const write = promisify(fs.write);
const fsc = fs.constants;

export const WHITEOUT_PREFIX = AUFS_PREFIX;
export const OPAQUE_MARKER = AUFS_OPAQUE;

export interface ImportOptions {
  /** xattr namespace of the overlay marks ('trusted.overlay.' as root) */
  xattrPrefix: string;
  /** called now and then with the bytes and entries done so far */
  onProgress?: (bytes: number, entries: number) => void;
  /** an xattr of the tar that could not be set and was skipped (see applyMetadata) */
  onWarning?: (message: string) => void;
}

export interface ImportResult {
  /** bytes of file data written */
  size: number;
  entries: number;
}

interface Times {
  sec: number;
  nsec: number;
}

type Header = Omit<Partial<tar.Header>, 'pax' | 'type'> & { type?: tar.Header['type'] | 'pax-global-header' | null; byteOffset?: number };

const XATTR = 'SCHILY.xattr.';

/** A PAX record as a byte string, if present and not empty (empty means: use the header field). */
function text(pax: PaxRecords, key: string): string | undefined {
  const v = pax.get(key);
  return v === undefined || v.length === 0 ? undefined : v.toString('latin1');
}

function paxTime(value: string | undefined, fallback: Date | undefined): Times {
  if (value !== undefined && /^-?\d+(\.\d+)?$/.test(value)) {
    const [s, frac = ''] = value.split('.');
    return { sec: Number(s), nsec: Number(frac.padEnd(9, '0').slice(0, 9)) };
  }
  const ms = fallback?.getTime() ?? 0;
  return { sec: Math.floor(ms / 1000), nsec: (ms % 1000) * 1e6 };
}

const PERM_BITS = 0o7777;

export async function importTar(input: Readable, layerDir: string, opts: ImportOptions): Promise<ImportResult> {
  const root = new LayerWriter(layerDir, { error: tarError });
  const extract = tar.extract({ filenameEncoding: 'latin1' } as Parameters<typeof tar.extract>[0]);
  const dirTimes: { parts: string[]; atime: Times; mtime: Times }[] = [];
  let size = 0;
  let entries = 0;
  const tap = new PaxTap();
  input.on('error', (e) => extract.destroy(e));
  tap.on('error', (e) => extract.destroy(e));
  input.pipe(tap).pipe(extract);
  try {
    for await (const entry of extract) {
      const h = entry.header as unknown as Header;
      const pax = tap.recordsAt(h.byteOffset ?? -1);
      const sparse = sparseOf(pax);
      const name = (sparse ? text(pax, SPARSE_NAME) : undefined) ?? text(pax, 'path') ?? h.name ?? '';
      const linkname = text(pax, 'linkpath') ?? h.linkname ?? '';
      const parts = components(name);
      entries++;
      if (parts.length === 0 || h.type === 'pax-global-header') {
        entry.resume();
        continue;
      }
      const base = parts[parts.length - 1];
      const parentParts = parts.slice(0, -1);
      const parent = root.dir(parentParts);
      if (base === OPAQUE_MARKER) {
        setOpaque(parent, opts.xattrPrefix);
        entry.resume();
        continue;
      }
      if (base.startsWith(WHITEOUT_PREFIX)) {
        entry.resume();
        if (base.startsWith(`${WHITEOUT_PREFIX}${WHITEOUT_PREFIX}`)) continue;
        const victim = base.slice(WHITEOUT_PREFIX.length);
        if (victim === '' || victim === '.' || victim === '..') throw tarError(`bad whiteout "${shown(name)}"`);
        root.forget([...parentParts, victim]);
        whiteoutAt(parent, victim);
        continue;
      }
      if (sparse && !(h.type === 'file' || h.type === 'contiguous-file' || h.type === undefined)) {
        throw tarError(`tar entry "${shown(name)}" carries a sparse map but is not a file`);
      }
      const existing = tryStatAt(parent, base);
      const isDir = h.type === 'directory';
      if (existing && !(isDir && (existing.mode & fsc.S_IFMT) === fsc.S_IFDIR)) {
        root.forget(parts);
        removeAt(parent, base);
      }
      const mode = (h.mode ?? 0o644) & PERM_BITS;
      switch (h.type) {
        case 'directory':
          if (!existing || (existing.mode & fsc.S_IFMT) !== fsc.S_IFDIR) native.mkdirat(parent, base, 0o700);
          break;
        case null:
          // a typeflag tar-stream does not know (moby refuses these too)
          throw tarError(`tar entry "${shown(name)}" has an unknown type`);
        case 'file':
        case 'contiguous-file':
        case undefined: {
          const fd = native.openat(parent, base, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | C.O_NOFOLLOW | C.O_CLOEXEC, 0o600);
          try {
            if (sparse) {
              const before = size;
              try {
                size += await writeSparse(fd, sparse, h.size ?? 0, entry as AsyncIterable<Buffer>, (b) => opts.onProgress?.(before + b, entries));
              } catch (e) {
                removeAt(parent, base); // no half-written file left behind
                throw e;
              }
              break;
            }
            let pos = 0;
            for await (const chunk of entry as AsyncIterable<Buffer>) {
              for (let off = 0; off < chunk.length;) {
                const { bytesWritten } = await write(fd, chunk, off, chunk.length - off, pos);
                off += bytesWritten;
                pos += bytesWritten;
              }
              opts.onProgress?.(size + pos, entries);
            }
            size += pos;
          } finally {
            native.close(fd);
          }
          break;
        }
        case 'symlink':
          native.symlinkat(linkname, parent, base);
          break;
        case 'link': {
          const target = components(linkname);
          if (target.length === 0) throw tarError(`hard link "${shown(name)}" has no target`);
          const tdir = root.dir(target.slice(0, -1));
          native.linkat(tdir, target[target.length - 1], parent, base, 0);
          entry.resume();
          continue; // the inode already has its metadata
        }
        case 'character-device':
        case 'block-device':
        case 'fifo': {
          const type = h.type === 'fifo' ? fsc.S_IFIFO : h.type === 'block-device' ? fsc.S_IFBLK : fsc.S_IFCHR;
          native.mknodat(parent, base, type | mode, h.devmajor ?? 0, h.devminor ?? 0);
          break;
        }
        default:
          log('skipping %s entry %s', h.type, shown(name));
          entry.resume();
          continue;
      }
      entry.resume();
      applyMetadata(parent, base, h, pax, mode, opts);
      const atime = paxTime(text(pax, 'atime'), h.mtime);
      const mtime = paxTime(text(pax, 'mtime'), h.mtime);
      if (isDir) dirTimes.push({ parts, atime, mtime });
      else native.utimensat(parent, base, atime.sec, atime.nsec, mtime.sec, mtime.nsec, C.AT_SYMLINK_NOFOLLOW);
    }
    // deepest first, so setting a child's times cannot disturb its parent's
    for (const d of dirTimes.reverse()) {
      const parent = root.dir(d.parts.slice(0, -1));
      native.utimensat(parent, d.parts[d.parts.length - 1], d.atime.sec, d.atime.nsec, d.mtime.sec, d.mtime.nsec, C.AT_SYMLINK_NOFOLLOW);
    }
  } catch (e) {
    input.unpipe(tap);
    tap.unpipe(extract);
    tap.destroy();
    extract.destroy();
    input.resume();
    throw e;
  } finally {
    root.close();
  }
  return { size, entries };
}

/**
 * xattrs the filesystem will not take, skipped with a warning as Docker's own drivers do
 * (moby's pkg/archive skips ENOTSUP and EPERM and fails on anything else): a namespace
 * the filesystem lacks, or `user.*` on a symlink or device (EPERM).
 */
const SKIPPED_XATTR_ERRORS = new Set(['ENOTSUP', 'EOPNOTSUPP', 'EPERM']);

function applyMetadata(parent: number, base: string, h: Header, pax: PaxRecords, mode: number, opts: ImportOptions): void {
  const uid = Number(text(pax, 'uid') ?? h.uid ?? 0);
  const gid = Number(text(pax, 'gid') ?? h.gid ?? 0);
  if (!Number.isSafeInteger(uid) || !Number.isSafeInteger(gid) || uid < 0 || gid < 0) {
    throw tarError(`tar entry "${shown(base)}" has a bad owner ${uid}:${gid}`);
  }
  native.fchownat(parent, base, uid, gid, C.AT_SYMLINK_NOFOLLOW);
  for (const [key, value] of pax) {
    if (!key.startsWith(XATTR)) continue;
    const xname = key.slice(XATTR.length);
    if (xname === '' || isOverlayNamespace(xname)) continue;
    try {
      native.setxattr(procFdPath(parent, base), xname, value, 0, false);
    } catch (e) {
      if (!isNativeError(e) || !SKIPPED_XATTR_ERRORS.has(e.code)) throw e;
      const msg = `skipped xattr ${shown(xname)} of "${shown(base)}": ${e.code} (the layer filesystem does not take it)`;
      log('%s', msg);
      opts.onWarning?.(msg);
    }
  }
  // after chown, which clears setuid/setgid; symlinks have no mode of their own
  if (h.type !== 'symlink') native.fchmodat(parent, base, mode);
}
