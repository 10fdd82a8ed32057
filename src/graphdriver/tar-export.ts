/**
 * Diff: the upper (diff dir) of a layer as a tar, whiteouts converted back to the
 * OCI/Docker form: a 0/0 character device NAME becomes an empty regular file `.wh.NAME`
 * (mode 0600), an opaque directory is followed by an empty `DIR/.wh..wh..opq`.
 *
 * A directory renamed from a lower (`<prefix>redirect` in the upper) holds only what
 * changed; the rest of its contents is still in the lowers, at the redirect's path. A tar
 * has no redirects, so such a directory is exported opaque with its whole merged
 * contents (upper over the lowers at the redirect, whiteouts applied), the way a copy
 * would have made it.
 *
 * Read straight from layer dirs (never through a mount this process serves). Entries
 * come depth first in byte order of names, each directory before its contents; hard
 * links become link entries to the first name seen. Private overlay xattrs are not
 * exported; the others go into PAX SCHILY.xattr.* records.
 *
 * Names, link targets and xattr values are bytes (latin1 strings / Buffers here), written
 * as they are on disk. The tar library writes PAX records as UTF-8 text, so whenever an
 * entry needs one (xattrs, a name or link target that is not short ASCII, a large id),
 * the exporter writes the single `x` header itself (pax.ts) and gives the library a plain
 * ustar header whose fields the PAX records override. Directories renamed from a lower
 * are read through merged.ts, which works on UTF-8 names.
 */
import * as fs from 'node:fs';
import { constants as osc } from 'node:os';
import * as path from 'node:path';
import * as tar from 'tar-stream';
import { native, C, isNativeError, type Stat } from '../native';
import { bytes, shown } from './beneath';
import { encodePax, paxHeaderBlock } from './pax';
import { OPAQUE_MARKER, WHITEOUT_PREFIX } from './tar-import';
import { isOverlayXattr, isWhiteout } from './marks';
import { listMerged, resolveRedirect } from './merged';
import { toSafeNumber } from '../int64';

const fsc = fs.constants;

type PackHeader = Partial<tar.Header> & { name: string };

/** An entry's header, names as byte strings, with the xattrs to export. */
type Entry = PackHeader & { xattrs?: Map<string, Buffer> };

// paths below are byte strings
const lstat = (abs: string): Stat => native.statx(C.AT_FDCWD, abs, C.AT_SYMLINK_NOFOLLOW);
const isDir = (st: Stat): boolean => (st.mode & fsc.S_IFMT) === fsc.S_IFDIR;
const byBytes = (a: string, b: string): number => Buffer.compare(Buffer.from(a, 'latin1'), Buffer.from(b, 'latin1'));
const join = (rel: string, name: string): string => (rel === '' ? name : `${rel}/${name}`);
const readdir = (dir: string): string[] => fs.readdirSync(Buffer.from(dir, 'latin1'), { encoding: 'latin1' });
/** mark values read straight by byte path (marks.ts takes UTF-8 paths) */
const mark = (abs: string, prefix: string, name: 'opaque' | 'redirect'): string | undefined => {
  const v = native.getxattrOrErrno(abs, `${prefix}${name}`, false);
  if (typeof v !== 'number') return v.toString('latin1');
  if (v === osc.errno.ENODATA || v === osc.errno.EOPNOTSUPP) return undefined;
  throw new Error(`reading ${prefix}${name} of ${shown(abs)}: errno ${v}`);
};

/** ustar fields the tar library writes as they are: printable ASCII that fits */
const USTAR_ID_MAX = 0o7777777;
const plain = (s: string | undefined, max: number): boolean => s === undefined || (s.length <= max && /^[\x20-\x7e]*$/.test(s));
/** the ustar stand-in for a name carried in a PAX record */
const standIn = (s: string, max: number): string => s.replace(/[^\x20-\x7e]/g, '_').slice(-max);

function xattrs(file: string, prefix: string): Map<string, Buffer> | undefined {
  let names: string[];
  try {
    names = native.listxattr(file, false);
  } catch (e) {
    if (isNativeError(e) && (e.code === 'ENOTSUP' || e.code === 'EOPNOTSUPP')) return undefined;
    throw e;
  }
  const out = new Map<string, Buffer>();
  for (const n of names.sort(byBytes)) {
    if (!isOverlayXattr(n, prefix)) out.set(n, native.getxattr(file, n, false));
  }
  return out.size > 0 ? out : undefined;
}

/** Writes the tar of `diffDir` (over `lowers`, top first) to a pack stream; the stream ends when done. */
export function exportTar(diffDir: string, xattrPrefix: string, lowers: string[] = []): tar.Pack {
  const pack = tar.pack();
  void new Exporter(pack, xattrPrefix, lowers).upper(bytes(diffDir), '').then(
    () => pack.finalize(),
    (e: Error) => pack.destroy(e),
  );
  return pack;
}

class Exporter {
  /** dev:ino of files with several links -> the name exported first */
  private readonly links = new Map<string, string>();

  constructor(private readonly pack: tar.Pack, private readonly prefix: string, private readonly lowers: string[]) {}

  /** One entry (file data from `file`, if given), preceded by its PAX header when it needs one. */
  private async entry(e: Entry, file?: string): Promise<void> {
    const { xattrs: xa, ...header } = e;
    const records: [string, Buffer][] = [];
    if (!plain(header.name, 100)) {
      records.push(['path', Buffer.from(header.name, 'latin1')]);
      header.name = standIn(header.name, 100);
    }
    if (header.linkname !== undefined && !plain(header.linkname, 100)) {
      records.push(['linkpath', Buffer.from(header.linkname, 'latin1')]);
      header.linkname = standIn(header.linkname, 100);
    }
    for (const id of ['uid', 'gid'] as const) {
      const v = header[id] ?? 0;
      if (v > USTAR_ID_MAX) {
        records.push([id, Buffer.from(String(v))]);
        header[id] = 0;
      }
    }
    for (const [n, v] of xa ?? []) records.push([`SCHILY.xattr.${n}`, v]);
    if (records.length > 0) {
      // Go's archive/tar takes only the last of consecutive `x` headers: exactly one goes
      // out, and the entry's own header (plain fields only) makes the library write none.
      // The pack is idle here (each entry is awaited), so these bytes land right before it.
      const body = encodePax(records);
      this.pack.push(paxHeaderBlock(body.length, Math.floor((header.mtime?.getTime() ?? 0) / 1000)));
      this.pack.push(Buffer.concat([body, Buffer.alloc((512 - (body.length % 512)) % 512)]));
    }
    if (file !== undefined) await fileEntry(this.pack, header, file);
    else {
      await new Promise<void>((resolve, reject) => {
        this.pack.entry(header, Buffer.alloc(0), (err) => (err ? reject(err) : resolve()));
      });
    }
  }

  /** The upper's own entries below `rel`: whiteouts and opaque marks become tar entries. */
  async upper(root: string, rel: string): Promise<void> {
    for (const name of readdir(path.join(root, rel)).sort(byBytes)) {
      const relName = join(rel, name);
      const abs = path.join(root, relName);
      const st = lstat(abs);
      if (isWhiteout(st)) {
        await this.entry({ ...common(st), name: join(rel, `${WHITEOUT_PREFIX}${name}`), type: 'file', mode: 0o600, size: 0 });
      } else if (!isDir(st)) {
        await this.nonDir(relName, abs, st);
      } else {
        const redirect = mark(abs, this.prefix, 'redirect');
        const opaque = redirect !== undefined || mark(abs, this.prefix, 'opaque') === 'y';
        await this.dir(relName, abs, st, opaque);
        if (redirect !== undefined) await this.merged(relName, abs, resolveRedirect(shown(path.posix.dirname(relName)), redirect));
        else await this.upper(root, relName);
      }
    }
  }

  /**
   * Everything a merged view shows below `rel`: `upperAbs` (if any) over the lowers'
   * dirs at `lowerRel` (if any). No whiteouts are written: an ancestor is opaque.
   * merged.ts speaks UTF-8 names; they are turned back into bytes here.
   */
  private async merged(rel: string, upperAbs: string | undefined, lowerRel: string | undefined): Promise<void> {
    for (const e of listMerged(this.lowers, this.prefix, upperAbs === undefined ? undefined : shown(upperAbs), lowerRel)) {
      const relName = join(rel, bytes(e.name));
      const abs = bytes(e.abs);
      if (!isDir(e.st)) {
        await this.nonDir(relName, abs, e.st);
        continue;
      }
      await this.dir(relName, abs, e.st, false);
      await this.merged(relName, e.upper ? abs : undefined, e.lowerRel);
    }
  }

  private async dir(relName: string, abs: string, st: Stat, opaque: boolean): Promise<void> {
    const header: Entry = { ...common(st), name: relName, xattrs: xattrs(abs, this.prefix), type: 'directory' };
    await this.entry(header);
    if (opaque) {
      await this.entry({
        name: `${relName}/${OPAQUE_MARKER}`, type: 'file', size: 0, mode: st.mode & 0o777,
        uid: st.uid, gid: st.gid, mtime: header.mtime,
      });
    }
  }

  private async nonDir(relName: string, abs: string, st: Stat): Promise<void> {
    const type = st.mode & fsc.S_IFMT;
    const header: Entry = { ...common(st), name: relName, xattrs: xattrs(abs, this.prefix) };
    if (type === fsc.S_IFREG) {
      const key = `${st.devMajor}:${st.devMinor}:${st.ino}`;
      const first = st.nlink > 1 ? this.links.get(key) : undefined;
      if (first !== undefined) {
        await this.entry({ ...header, type: 'link', linkname: first, size: 0 });
        return;
      }
      if (st.nlink > 1) this.links.set(key, relName);
      await this.entry({ ...header, type: 'file', size: toSafeNumber(st.size, 'file size') }, abs);
    } else if (type === fsc.S_IFLNK) {
      await this.entry({ ...header, type: 'symlink', linkname: native.readlinkat(C.AT_FDCWD, abs) });
    } else if (type === fsc.S_IFCHR || type === fsc.S_IFBLK || type === fsc.S_IFIFO) {
      const kind = type === fsc.S_IFCHR ? 'character-device' : type === fsc.S_IFBLK ? 'block-device' : 'fifo';
      await this.entry({ ...header, type: kind, devmajor: st.rdevMajor, devminor: st.rdevMinor });
    }
    // sockets are not archived (as tar(1) and Docker do)
  }
}

function common(st: Stat): PackHeader {
  return {
    name: '',
    mode: st.mode & 0o7777,
    uid: st.uid,
    gid: st.gid,
    mtime: new Date(st.mtimeSec * 1000),
  };
}

/** A file entry with its data read from `file` (a byte-string path). */
function fileEntry(pack: tar.Pack, header: PackHeader, file: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const sink = pack.entry(header, (err) => (err ? reject(err) : resolve()));
    const src = fs.createReadStream(Buffer.from(file, 'latin1'));
    src.on('error', (e) => {
      sink.destroy(e);
      reject(e);
    });
    src.pipe(sink);
  });
}
