/**
 * SETATTR translation (FATTR_* valid bits -> SetattrChanges) and the suid/sgid
 * clearing the kernel leaves to us under HANDLE_KILLPRIV_V2:
 * - chown of a non-directory clears S_ISUID, and S_ISGID by the VFS's rule (src/creds.ts:
 *   group-exec, or a caller outside the file's group);
 * - truncate with FATTR_KILL_SUIDGID, WRITE with WRITE_KILL_SUIDGID and OPEN/CREATE with
 *   O_TRUNC and OPEN_KILL_SUIDGID clear the same bits (the kernel sets those flags only
 *   when the caller lacks CAP_FSETID).
 * A WRITE of a caller without CAP_FSETID carries WRITE_KILL_SUIDGID every time; a node
 * found without set-id bits is remembered (NoSetid), so its later writes cost no
 * getattr.
 */
import { constants as fsc } from 'node:fs';
import type { Ctx, FileSystemApi, NodeId, SetattrChanges } from '../api';
import type { SetattrIn } from '../wire/decode';
import { FATTR } from '../wire/protocol';
import { killedMode, S_ISGID, S_ISUID } from '../../creds';

const PERM_MASK = 0o7777;

export async function setattrChanges(fs: FileSystemApi, ctx: Ctx, node: NodeId, s: SetattrIn): Promise<SetattrChanges> {
  const v = s.valid;
  const ch: SetattrChanges = {};
  if (v & FATTR.MODE) ch.mode = s.mode & PERM_MASK;
  if (v & FATTR.UID) ch.uid = s.uid;
  if (v & FATTR.GID) ch.gid = s.gid;
  if (v & FATTR.SIZE) ch.size = s.size;
  if (v & FATTR.ATIME_NOW) ch.atime = 'now';
  else if (v & FATTR.ATIME) ch.atime = { sec: s.atimeSec, nsec: s.atimeNsec };
  if (v & FATTR.MTIME_NOW) ch.mtime = 'now';
  else if (v & FATTR.MTIME) ch.mtime = { sec: s.mtimeSec, nsec: s.mtimeNsec };
  if (v & FATTR.FH) ch.fh = s.fh;

  const chown = (v & (FATTR.UID | FATTR.GID)) !== 0;
  const killTrunc = (v & FATTR.KILL_SUIDGID) !== 0 && (v & FATTR.SIZE) !== 0;
  if (ch.mode === undefined && (chown || killTrunc)) {
    const attr = await fs.getattr(ctx, node, ch.fh);
    const isDir = (attr.mode & fsc.S_IFMT) === fsc.S_IFDIR;
    if (!isDir) {
      const m = killedMode(attr.mode, ctx, attr.gid);
      if (m !== attr.mode) ch.mode = m & PERM_MASK;
    }
  }
  return ch;
}

/**
 * Nodes known to have neither S_ISUID nor S_ISGID. Set-id bits come only with a chmod
 * (SETATTR; a creation makes a new node), so the bridge forgets them all at every
 * SETATTR that changes mode or owner, and a node when the kernel forgets it.
 */
export class NoSetid {
  private readonly ids = new Set<NodeId>();

  has(node: NodeId): boolean {
    return this.ids.has(node);
  }

  add(node: NodeId): void {
    this.ids.add(node);
  }

  forget(node: NodeId): void {
    this.ids.delete(node);
  }

  clear(): void {
    this.ids.clear();
  }
}

/** clears suid/sgid of `node` if set (WRITE / OPEN with the KILL_SUIDGID flag) */
export async function killSuidgid(fs: FileSystemApi, ctx: Ctx, node: NodeId, known: NoSetid, fh?: number): Promise<void> {
  if (known.has(node)) return;
  const attr = await fs.getattr(ctx, node, fh);
  if ((attr.mode & fsc.S_IFMT) === fsc.S_IFDIR) return;
  if ((attr.mode & (S_ISUID | S_ISGID)) === 0) {
    known.add(node);
    return;
  }
  const m = killedMode(attr.mode, ctx, attr.gid);
  if (m !== attr.mode) await fs.setattr(ctx, node, { mode: m & PERM_MASK, ...(fh === undefined ? {} : { fh }) });
}
