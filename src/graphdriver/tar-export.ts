/**
 * Diff: the upper (diff dir) of a layer as a tar, whiteouts converted back to the
 * OCI/Docker form: a 0/0 character device NAME becomes an empty regular file `.wh.NAME`
 * (mode 0600), an opaque directory is followed by an empty `DIR/.wh..wh..opq`.
 *
 * Read straight from the layer dir (never through a mount this process serves). Entries
 * come depth first in byte order of names, each directory before its contents; hard
 * links within the layer become link entries to the first name seen. Private overlay
 * xattrs are not exported; the others go into PAX SCHILY.xattr.* records.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tar from 'tar-stream';
import { native, C, isNativeError, type Stat } from '../native';
import { bytes } from './beneath';
import { StratafsError } from '../errors';
import { OPAQUE_MARKER, WHITEOUT_PREFIX } from './tar-import';
import { isOverlayXattr, isWhiteout, hasMark } from './marks';

const fsc = fs.constants;

type PackHeader = Partial<tar.Header> & { name: string; pax?: Record<string, string> };

/** Writes the tar of `diffDir` to a pack stream; returns the stream (ends when done). */
export function exportTar(diffDir: string, xattrPrefix: string): tar.Pack {
  const pack = tar.pack();
  void walk(pack, diffDir, xattrPrefix).then(
    () => pack.finalize(),
    (e: Error) => pack.destroy(e),
  );
  return pack;
}

function entry(pack: tar.Pack, header: PackHeader, data?: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    pack.entry(header, data ?? Buffer.alloc(0), (err) => (err ? reject(err) : resolve()));
  });
}

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

async function walk(pack: tar.Pack, root: string, prefix: string): Promise<void> {
  const links = new Map<string, string>();
  const visit = async (rel: string): Promise<void> => {
    const names = fs.readdirSync(path.join(root, rel)).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
    for (const name of names) {
      const relName = rel === '' ? name : `${rel}/${name}`;
      const abs = path.join(root, relName);
      const st = native.statx(C.AT_FDCWD, bytes(abs), C.AT_SYMLINK_NOFOLLOW);
      const type = st.mode & fsc.S_IFMT;
      if (isWhiteout(st)) {
        const wh = rel === '' ? `${WHITEOUT_PREFIX}${name}` : `${rel}/${WHITEOUT_PREFIX}${name}`;
        await entry(pack, { ...common(st), name: wh, type: 'file', mode: 0o600, size: 0 });
        continue;
      }
      const header: PackHeader = { ...common(st), name: relName, pax: xattrs(abs, prefix) };
      if (type === fsc.S_IFDIR) {
        if (hasMark(abs, prefix, 'redirect')) {
          // a directory renamed from a lower: its contents live partly in the lowers
          throw new StratafsError('STRATAFS_ERR_PLUGIN', `cannot export ${relName}: a directory renamed from a lower layer (redirect) is not supported by Diff`);
        }
        await entry(pack, { ...header, type: 'directory' });
        if (hasMark(abs, prefix, 'opaque')) {
          await entry(pack, {
            name: `${relName}/${OPAQUE_MARKER}`, type: 'file', size: 0, mode: st.mode & 0o777,
            uid: st.uid, gid: st.gid, mtime: header.mtime,
          });
        }
        await visit(relName);
      } else if (type === fsc.S_IFREG) {
        const key = `${st.devMajor}:${st.devMinor}:${st.ino}`;
        const first = st.nlink > 1 ? links.get(key) : undefined;
        if (first !== undefined) {
          await entry(pack, { ...header, type: 'link', linkname: first, size: 0 });
          continue;
        }
        if (st.nlink > 1) links.set(key, relName);
        await fileEntry(pack, { ...header, type: 'file', size: st.size }, abs);
      } else if (type === fsc.S_IFLNK) {
        const target = Buffer.from(native.readlinkat(C.AT_FDCWD, bytes(abs)), 'latin1').toString('utf8');
        await entry(pack, { ...header, type: 'symlink', linkname: target });
      } else if (type === fsc.S_IFCHR || type === fsc.S_IFBLK || type === fsc.S_IFIFO) {
        const kind = type === fsc.S_IFCHR ? 'character-device' : type === fsc.S_IFBLK ? 'block-device' : 'fifo';
        await entry(pack, { ...header, type: kind, devmajor: st.rdevMajor, devminor: st.rdevMinor });
      }
      // sockets are not archived (as tar(1) and Docker do)
    }
  };
  await visit('');
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
