/**
 * Diff: the upper (diff dir) of a layer as a tar, whiteouts converted back to the
 * OCI/Docker form: a whiteout NAME becomes an empty regular file `.wh.NAME` (mode 0600),
 * an opaque directory is followed by an empty `DIR/.wh..wh..opq`.
 *
 * A directory renamed from a lower (`<prefix>redirect` in the upper) holds only what
 * changed; the rest of its contents is still in the lowers, at the redirect's path. A tar
 * has no redirects, so such a directory is exported opaque with its whole merged
 * contents, the way a copy would have made it. A metacopy file goes out with its data
 * from the lower that holds it.
 *
 * Everything is read through src/layers (LayerStack): fd-relative from the layer roots,
 * never following a symlink, the merged parts by the mount's own lookup and listing
 * rules; never through a mount this process serves. Entries come depth first in byte
 * order of names, each directory before its contents; hard links become link entries
 * to the first name seen. Private overlay xattrs are not exported; the others (escaped
 * ones under the name the mount shows) go into PAX SCHILY.xattr.* records.
 *
 * Names, link targets and xattr values are bytes (latin1 strings / Buffers here), written
 * as they are on disk. The tar library writes PAX records as UTF-8 text, so whenever an
 * entry needs one (xattrs, a name or link target that is not short ASCII, a large id),
 * the exporter writes the single `x` header itself (pax.ts) and gives the library a plain
 * ustar header whose fields the PAX records override.
 */
import * as fs from 'node:fs';
import * as tar from 'tar-stream';
import type { Stat } from '../native';
import { toSafeNumber } from '../int64';
import { AUFS_OPAQUE, AUFS_PREFIX, isDirStat, type FoundLower, type Layer, type LayerStack, type MergedDir, type Resolved } from '../layers';
import { encodePax, paxHeaderBlock } from './pax';

const fsc = fs.constants;

type PackHeader = Partial<tar.Header> & { name: string };

/** An entry's header, names as byte strings, with the xattrs to export. */
type Entry = PackHeader & { xattrs?: Map<string, Buffer> };

/** An object in one layer. */
interface At {
  layer: Layer;
  path: string;
}

const join = (rel: string, name: string): string => (rel === '' ? name : `${rel}/${name}`);

/** ustar fields the tar library writes as they are: printable ASCII that fits */
const USTAR_ID_MAX = 0o7777777;
const plain = (s: string | undefined, max: number): boolean => s === undefined || (s.length <= max && /^[\x20-\x7e]*$/.test(s));
/** the ustar stand-in for a name carried in a PAX record */
const standIn = (s: string, max: number): string => s.replace(/[^\x20-\x7e]/g, '_').slice(-max);

/**
 * Writes the tar of `stack`'s upper over its lowers to a pack stream; the stream ends
 * when done. The stack is closed when the export ends, whichever way.
 */
export function exportTar(stack: LayerStack): tar.Pack {
  const pack = tar.pack();
  const root = stack.root();
  const exporter = new Exporter(pack, stack);
  // a pack destroyed before the end (the reader went away) stops the walk at its next
  // step and closes the stack at once: no fd stays open for an export nobody reads
  const stop = (): void => {
    if (exporter.stopped) return;
    exporter.stopped = true;
    stack.close();
  };
  pack.once('close', stop);
  const walk = root.upper === null ? Promise.resolve() : exporter.upper('', root);
  void walk.then(
    () => {
      if (exporter.stopped) return;
      stop();
      pack.finalize();
    },
    (e: Error) => {
      stop();
      pack.destroy(e);
    },
  );
  return pack;
}

class Exporter {
  /** dev:ino of files with several links -> the name exported first */
  private readonly links = new Map<string, string>();
  /** set when the pack went away: the stack is closed, nothing may touch it */
  stopped = false;

  constructor(private readonly pack: tar.Pack, private readonly stack: LayerStack) {}

  /** One entry (file data from `data`, if given), preceded by its PAX header when it needs one. */
  private async entry(e: Entry, data?: At): Promise<void> {
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
    if (data !== undefined) await fileEntry(this.pack, header, this.stack.openRead(data.layer, data.path));
    else {
      await new Promise<void>((resolve, reject) => {
        this.pack.entry(header, Buffer.alloc(0), (err) => (err ? reject(err) : resolve()));
      });
    }
    // every step of the walk ends here: past this, the walk touches the stack again
    if (this.stopped) throw new Error('the export was abandoned');
  }

  /** Where the object `r`, named `name` in `dir`, is: its upper, else its top lower. */
  private where(dir: MergedDir, name: string, r: Resolved): At {
    if (r.upper && dir.upper) return { layer: dir.upper.layer, path: join(dir.upper.path, name) };
    const l = r.lowers[0] as FoundLower;
    return { layer: l.layer, path: l.path };
  }

  /** The upper's own entries of `dir` (at `rel`): whiteouts and opaque marks become tar entries. */
  async upper(rel: string, dir: MergedDir): Promise<void> {
    if (dir.upper === null) return;
    for (const e of this.stack.upperEntries(dir.upper)) {
      const relName = join(rel, e.name);
      if (e.whiteout) {
        await this.entry({ ...common(e.stat), name: join(rel, `${AUFS_PREFIX}${e.name}`), type: 'file', mode: 0o600, size: 0 });
        continue;
      }
      const r = this.stack.lookup(dir, e.name);
      if (r === null) continue;
      if (!isDirStat(e.stat)) {
        await this.nonDir(relName, dir, e.name, r);
        continue;
      }
      const child = this.stack.child(dir, e.name, r);
      await this.dir(relName, this.where(dir, e.name, r), e.stat, e.opaque || e.redirect);
      if (e.redirect) await this.merged(relName, child);
      else await this.upper(relName, child);
    }
  }

  /** Everything the merged directory `dir` shows (it goes out opaque: no whiteouts). */
  private async merged(rel: string, dir: MergedDir): Promise<void> {
    for (const name of this.stack.names(dir)) {
      const r = this.stack.lookup(dir, name);
      if (r === null) continue;
      const relName = join(rel, name);
      const st = r.upper ?? (r.lowers[0] as FoundLower).stat;
      if (!isDirStat(st)) {
        await this.nonDir(relName, dir, name, r);
        continue;
      }
      await this.dir(relName, this.where(dir, name, r), st, false);
      await this.merged(relName, this.stack.child(dir, name, r));
    }
  }

  private async dir(relName: string, at: At, st: Stat, opaque: boolean): Promise<void> {
    const header: Entry = { ...common(st), name: relName, xattrs: this.xattrs(at), type: 'directory' };
    await this.entry(header);
    if (opaque) {
      await this.entry({
        name: `${relName}/${AUFS_OPAQUE}`, type: 'file', size: 0, mode: st.mode & 0o777,
        uid: st.uid, gid: st.gid, mtime: header.mtime,
      });
    }
  }

  private xattrs(at: At): Map<string, Buffer> | undefined {
    const x = this.stack.xattrs(at.layer, at.path);
    return x.size > 0 ? x : undefined;
  }

  private async nonDir(relName: string, dir: MergedDir, name: string, r: Resolved): Promise<void> {
    const at = this.where(dir, name, r);
    const st = r.upper ?? (r.lowers[0] as FoundLower).stat;
    const type = st.mode & fsc.S_IFMT;
    const header: Entry = { ...common(st), name: relName, xattrs: this.xattrs(at) };
    if (type === fsc.S_IFREG) {
      const key = `${at.layer.devMajor}:${at.layer.devMinor}:${st.ino}`;
      const first = st.nlink > 1 ? this.links.get(key) : undefined;
      if (first !== undefined) {
        await this.entry({ ...header, type: 'link', linkname: first, size: 0 });
        return;
      }
      if (st.nlink > 1) this.links.set(key, relName);
      // a metacopy file's data is in the lower that lookup found for it
      const data = r.metacopy ? (r.lowers[0] as FoundLower) : at;
      await this.entry({ ...header, type: 'file', size: toSafeNumber(st.size, 'file size') }, data);
    } else if (type === fsc.S_IFLNK) {
      await this.entry({ ...header, type: 'symlink', linkname: this.stack.readlink(at.layer, at.path) });
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

/** A file entry with its data read from the open fd `fd` (closed when done). */
function fileEntry(pack: tar.Pack, header: PackHeader, fd: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const sink = pack.entry(header, (err) => (err ? reject(err) : resolve()));
    const src = fs.createReadStream('', { fd, autoClose: true });
    src.on('error', (e) => {
      sink.destroy(e);
      reject(e);
    });
    // a sink destroyed with the pack ends the read too (its fd is closed)
    sink.once('close', () => src.destroy());
    src.pipe(sink);
  });
}
