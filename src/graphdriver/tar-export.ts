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
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tar from 'tar-stream';
import { native, C, isNativeError, type Stat } from '../native';
import { bytes } from './beneath';
import { OPAQUE_MARKER, WHITEOUT_PREFIX } from './tar-import';
import { isOverlayXattr, isWhiteout, hasMark, markValue } from './marks';
import { listMerged, resolveRedirect } from './merged';

const fsc = fs.constants;

type PackHeader = Partial<tar.Header> & { name: string; pax?: Record<string, string> };

const lstat = (abs: string): Stat => native.statx(C.AT_FDCWD, bytes(abs), C.AT_SYMLINK_NOFOLLOW);
const isDir = (st: Stat): boolean => (st.mode & fsc.S_IFMT) === fsc.S_IFDIR;
const byBytes = (a: string, b: string): number => Buffer.compare(Buffer.from(a), Buffer.from(b));
const join = (rel: string, name: string): string => (rel === '' ? name : `${rel}/${name}`);

function xattrs(file: string, prefix: string): Record<string, string> | undefined {
  let names: string[];
  try {
    names = native.listxattr(bytes(file), false);
  } catch (e) {
    if (isNativeError(e) && (e.code === 'ENOTSUP' || e.code === 'EOPNOTSUPP')) return undefined;
    throw e;
  }
  const out: Record<string, string> = {};
  let any = false;
  for (const n of names.sort()) {
    if (isOverlayXattr(n, prefix)) continue;
    out[`SCHILY.xattr.${Buffer.from(n, 'latin1').toString('utf8')}`] = native.getxattr(bytes(file), n, false).toString('utf8');
    any = true;
  }
  return any ? out : undefined;
}

/** Writes the tar of `diffDir` (over `lowers`, top first) to a pack stream; the stream ends when done. */
export function exportTar(diffDir: string, xattrPrefix: string, lowers: string[] = []): tar.Pack {
  const pack = tar.pack();
  void new Exporter(pack, xattrPrefix, lowers).upper(diffDir, '').then(
    () => pack.finalize(),
    (e: Error) => pack.destroy(e),
  );
  return pack;
}

class Exporter {
  /** dev:ino of files with several links -> the name exported first */
  private readonly links = new Map<string, string>();

  constructor(private readonly pack: tar.Pack, private readonly prefix: string, private readonly lowers: string[]) {}

  private entry(header: PackHeader, data?: Buffer): Promise<void> {
    return new Promise((resolve, reject) => {
      this.pack.entry(header, data ?? Buffer.alloc(0), (err) => (err ? reject(err) : resolve()));
    });
  }

  /** The upper's own entries below `rel`: whiteouts and opaque marks become tar entries. */
  async upper(root: string, rel: string): Promise<void> {
    for (const name of fs.readdirSync(path.join(root, rel)).sort(byBytes)) {
      const relName = join(rel, name);
      const abs = path.join(root, relName);
      const st = lstat(abs);
      if (isWhiteout(st)) {
        await this.entry({ ...common(st), name: join(rel, `${WHITEOUT_PREFIX}${name}`), type: 'file', mode: 0o600, size: 0 });
      } else if (!isDir(st)) {
        await this.nonDir(relName, abs, st);
      } else {
        const redirect = markValue(abs, this.prefix, 'redirect');
        const opaque = redirect !== undefined || hasMark(abs, this.prefix, 'opaque');
        await this.dir(relName, abs, st, opaque);
        if (redirect !== undefined) await this.merged(relName, abs, resolveRedirect(path.posix.dirname(relName), redirect));
        else await this.upper(root, relName);
      }
    }
  }

  /**
   * Everything a merged view shows below `rel`: `upperAbs` (if any) over the lowers'
   * dirs at `lowerRel` (if any). No whiteouts are written: an ancestor is opaque.
   */
  private async merged(rel: string, upperAbs: string | undefined, lowerRel: string | undefined): Promise<void> {
    for (const e of listMerged(this.lowers, this.prefix, upperAbs, lowerRel)) {
      const relName = join(rel, e.name);
      if (!isDir(e.st)) {
        await this.nonDir(relName, e.abs, e.st);
        continue;
      }
      await this.dir(relName, e.abs, e.st, false);
      await this.merged(relName, e.upper ? e.abs : undefined, e.lowerRel);
    }
  }

  private async dir(relName: string, abs: string, st: Stat, opaque: boolean): Promise<void> {
    const header: PackHeader = { ...common(st), name: relName, pax: xattrs(abs, this.prefix), type: 'directory' };
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
    const header: PackHeader = { ...common(st), name: relName, pax: xattrs(abs, this.prefix) };
    if (type === fsc.S_IFREG) {
      const key = `${st.devMajor}:${st.devMinor}:${st.ino}`;
      const first = st.nlink > 1 ? this.links.get(key) : undefined;
      if (first !== undefined) {
        await this.entry({ ...header, type: 'link', linkname: first, size: 0 });
        return;
      }
      if (st.nlink > 1) this.links.set(key, relName);
      await fileEntry(this.pack, { ...header, type: 'file', size: st.size }, abs);
    } else if (type === fsc.S_IFLNK) {
      const target = Buffer.from(native.readlinkat(C.AT_FDCWD, bytes(abs)), 'latin1').toString('utf8');
      await this.entry({ ...header, type: 'symlink', linkname: target });
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

function fileEntry(pack: tar.Pack, header: PackHeader, file: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const sink = pack.entry(header, (err) => (err ? reject(err) : resolve()));
    const src = fs.createReadStream(file);
    src.on('error', (e) => {
      sink.destroy(e);
      reject(e);
    });
    src.pipe(sink);
  });
}
