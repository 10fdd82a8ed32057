/**
 * Opcode -> handler table. Each handler calls the FileSystemApi and returns the reply
 * to write (or null: FORGET and BATCH_FORGET are never answered). A handler may throw
 * anything: the session turns it into an error reply with toErrno().
 *
 * `undo` runs when the reply could not be delivered (the request was interrupted and
 * the kernel answered the write with ENOENT): whatever the reply would have handed to
 * the kernel — lookup counts, open handles — is taken back so nothing leaks.
 */
import { constants as fsc } from 'node:fs';
import type { Ctx, Entry, FileSystemApi, NodeId, OpenResult } from '../api';
import type { CacheTimeouts } from '../wire/types';
import { fail, E } from '../../errors';
import type { Request, RequestBody, RequestKind } from '../wire/decode';
import {
  decodeDev, encodeAttr, encodeCreate, encodeData, encodeEmpty, encodeEntry, encodeLseek, encodeOpen,
  encodeReadlink, encodeStatfs, encodeWrite, encodeXattrSize, xattrList, type OpenOut, type Reply,
  encodeError, encodeNegativeEntry,
} from '../wire/encode';
import { DirentWriter } from '../wire/dirent';
import { FOPEN, OPEN_KILL_SUIDGID, RENAME_FLAG, WRITE_KILL_SUIDGID } from '../wire/protocol';
import type { PassthroughRegistry } from './passthrough';
import { killSuidgid, setattrChanges } from './setattr';

export interface Core {
  fs: FileSystemApi;
  /**
   * seconds the kernel may cache names (entries, and names that do not exist: 0 answers
   * ENOENT) and attributes; the bridge alone decides them (FuseSessionOptions)
   */
  timeouts: CacheTimeouts;
  registry: PassthroughRegistry;
  killprivV2: boolean;
  /** DONT_MASK negotiated: creations carry the caller's umask for the filesystem to apply */
  dontMask: boolean;
  log: (fmt: string, ...args: unknown[]) => void;
}

export interface Outcome {
  reply: Reply;
  undo?: () => void | Promise<void>;
}

type Body<K extends RequestKind> = Extract<RequestBody, { kind: K }>;
type Handler<K extends RequestKind> = (core: Core, req: Request<Body<K>>, ctx: Ctx) => Promise<Outcome | null>;
/** handled by the session itself */
type SessionKinds = 'INIT' | 'INTERRUPT' | 'unknown';
export type HandlerTable = { [K in Exclude<RequestKind, SessionKinds>]: Handler<K> };

const entryOutcome = (core: Core, unique: bigint, e: Entry): Outcome => ({
  reply: encodeEntry(unique, e, core.timeouts),
  undo: () => core.fs.forget(e.nodeId, 1),
});

/** the caller's umask travels with the context when the kernel did not apply it */
function withUmask(core: Core, ctx: Ctx, umask: number): Ctx {
  return core.dontMask ? { ...ctx, umask } : ctx;
}

function dirOpenOut(r: OpenResult): OpenOut {
  let flags = 0;
  if (r.keepCache) flags |= FOPEN.KEEP_CACHE;
  if (r.cacheDir) flags |= FOPEN.CACHE_DIR;
  return { fh: r.fh, openFlags: flags, backingId: 0 };
}

async function openFile(core: Core, ctx: Ctx, node: NodeId, r: OpenResult, flags: number, openFlags: number): Promise<OpenOut> {
  if ((flags & fsc.O_TRUNC) !== 0 && (openFlags & OPEN_KILL_SUIDGID) !== 0 && core.killprivV2) {
    try {
      await killSuidgid(core.fs, ctx, node, r.fh);
    } catch (e) {
      await core.fs.release(r.fh);
      throw e;
    }
  }
  // FLUSH does nothing here (no locks, data goes to the layer file as written): the
  // kernel need not send it on every close
  const out = core.registry.open(node, r);
  out.openFlags |= FOPEN.NOFLUSH;
  return out;
}

export const handlers: HandlerTable = {
  async LOOKUP(core, { header, body }, ctx) {
    const e = await core.fs.lookup(ctx, header.nodeId, body.name);
    if (e === null) {
      return { reply: core.timeouts.entry > 0 ? encodeNegativeEntry(header.unique, core.timeouts.entry) : encodeError(header.unique, E.ENOENT) };
    }
    return entryOutcome(core, header.unique, e);
  },
  async FORGET(core, { header, body }) {
    core.fs.forget(header.nodeId, body.nlookup);
    return null;
  },
  async BATCH_FORGET(core, { body }) {
    for (const { nodeId, nlookup } of body.items) core.fs.forget(nodeId, nlookup);
    return null;
  },
  async GETATTR(core, { header, body }, ctx) {
    const attr = await core.fs.getattr(ctx, header.nodeId, body.fh);
    return { reply: encodeAttr(header.unique, attr, core.timeouts.attr) };
  },
  async SETATTR(core, { header, body }, ctx) {
    const changes = await setattrChanges(core.fs, ctx, header.nodeId, body);
    const attr = await core.fs.setattr(ctx, header.nodeId, changes);
    return { reply: encodeAttr(header.unique, attr, core.timeouts.attr) };
  },
  async READLINK(core, { header }, ctx) {
    return { reply: encodeReadlink(header.unique, await core.fs.readlink(ctx, header.nodeId)) };
  },
  async SYMLINK(core, { header, body }, ctx) {
    return entryOutcome(core, header.unique, await core.fs.symlink(ctx, header.nodeId, body.name, body.target));
  },
  async MKNOD(core, { header, body }, ctx) {
    const { major, minor } = decodeDev(body.rdev);
    const c = withUmask(core, ctx, body.umask);
    return entryOutcome(core, header.unique, await core.fs.mknod(c, header.nodeId, body.name, body.mode, major, minor));
  },
  async MKDIR(core, { header, body }, ctx) {
    return entryOutcome(core, header.unique, await core.fs.mkdir(withUmask(core, ctx, body.umask), header.nodeId, body.name, body.mode));
  },
  async UNLINK(core, { header, body }, ctx) {
    await core.fs.unlink(ctx, header.nodeId, body.name);
    return { reply: encodeEmpty(header.unique) };
  },
  async RMDIR(core, { header, body }, ctx) {
    await core.fs.rmdir(ctx, header.nodeId, body.name);
    return { reply: encodeEmpty(header.unique) };
  },
  async RENAME(core, { header, body }, ctx) {
    const known = RENAME_FLAG.NOREPLACE | RENAME_FLAG.EXCHANGE | RENAME_FLAG.WHITEOUT;
    if ((body.flags & ~known) !== 0) fail(E.EINVAL);
    await core.fs.rename(ctx, header.nodeId, body.name, body.newDir, body.newName, {
      noReplace: (body.flags & RENAME_FLAG.NOREPLACE) !== 0,
      exchange: (body.flags & RENAME_FLAG.EXCHANGE) !== 0,
      whiteout: (body.flags & RENAME_FLAG.WHITEOUT) !== 0,
    });
    return { reply: encodeEmpty(header.unique) };
  },
  async LINK(core, { header, body }, ctx) {
    return entryOutcome(core, header.unique, await core.fs.link(ctx, body.oldNodeId, header.nodeId, body.newName));
  },
  async OPEN(core, { header, body }, ctx) {
    const r = await core.fs.open(ctx, header.nodeId, body.flags);
    const out = await openFile(core, ctx, header.nodeId, r, body.flags, body.openFlags);
    return {
      reply: encodeOpen(header.unique, out),
      undo: async () => {
        core.registry.release(r.fh);
        await core.fs.release(r.fh);
      },
    };
  },
  async CREATE(core, { header, body }, ctx) {
    const { entry, open } = await core.fs.create(withUmask(core, ctx, body.umask), header.nodeId, body.name, body.mode, body.flags);
    let out: OpenOut;
    try {
      out = await openFile(core, ctx, entry.nodeId, open, body.flags, body.openFlags);
    } catch (e) {
      core.fs.forget(entry.nodeId, 1);
      throw e;
    }
    return {
      reply: encodeCreate(header.unique, entry, core.timeouts, out),
      undo: async () => {
        core.registry.release(open.fh);
        core.fs.forget(entry.nodeId, 1);
        await core.fs.release(open.fh);
      },
    };
  },
  async READ(core, { header, body }) {
    return { reply: encodeData(header.unique, await core.fs.read(body.fh, body.offset, body.size)) };
  },
  async WRITE(core, { header, body }, ctx) {
    if ((body.writeFlags & WRITE_KILL_SUIDGID) !== 0 && core.killprivV2) {
      await killSuidgid(core.fs, ctx, header.nodeId, body.fh);
    }
    return { reply: encodeWrite(header.unique, await core.fs.write(body.fh, body.offset, body.data)) };
  },
  async STATFS(core, { header }, ctx) {
    return { reply: encodeStatfs(header.unique, await core.fs.statfs(ctx, header.nodeId)) };
  },
  async RELEASE(core, { header, body }) {
    core.registry.release(body.fh);
    await core.fs.release(body.fh);
    return { reply: encodeEmpty(header.unique) };
  },
  async FSYNC(core, { header, body }) {
    await core.fs.fsync(body.fh, body.datasync);
    return { reply: encodeEmpty(header.unique) };
  },
  async SETXATTR(core, { header, body }, ctx) {
    await core.fs.setxattr(ctx, header.nodeId, body.name, body.value, body.flags);
    return { reply: encodeEmpty(header.unique) };
  },
  async GETXATTR(core, { header, body }, ctx) {
    const value = await core.fs.getxattr(ctx, header.nodeId, body.name);
    if (value === null) return { reply: encodeError(header.unique, E.ENODATA) };
    if (body.size === 0) return { reply: encodeXattrSize(header.unique, value.length) };
    if (value.length > body.size) fail(E.ERANGE);
    return { reply: encodeData(header.unique, value) };
  },
  async LISTXATTR(core, { header, body }, ctx) {
    const list = xattrList(await core.fs.listxattr(ctx, header.nodeId));
    if (body.size === 0) return { reply: encodeXattrSize(header.unique, list.length) };
    if (list.length > body.size) fail(E.ERANGE);
    return { reply: encodeData(header.unique, list) };
  },
  async REMOVEXATTR(core, { header, body }, ctx) {
    await core.fs.removexattr(ctx, header.nodeId, body.name);
    return { reply: encodeEmpty(header.unique) };
  },
  async FLUSH(core, { header, body }) {
    await core.fs.flush(body.fh);
    return { reply: encodeEmpty(header.unique) };
  },
  async OPENDIR(core, { header }, ctx) {
    const r = await core.fs.opendir(ctx, header.nodeId);
    return { reply: encodeOpen(header.unique, dirOpenOut(r)), undo: () => core.fs.releasedir(r.fh) };
  },
  async READDIR(core, { header, body }) {
    const entries = await core.fs.readdir(body.fh, body.offset);
    const w = new DirentWriter(header.unique, body.size);
    for (const d of entries) if (!w.add(d)) break;
    return { reply: w.finish() };
  },
  async READDIRPLUS(core, { header, body }, ctx) {
    const entries = await core.fs.readdir(body.fh, body.offset);
    const w = new DirentWriter(header.unique, body.size);
    const looked: NodeId[] = [];
    try {
      for (const d of entries) {
        if (!w.fits(w.plusSize(d.name))) break;
        let entry: Entry | null = null;
        if (d.name !== '.' && d.name !== '..') {
          try {
            entry = await core.fs.lookup(ctx, header.nodeId, d.name);
            if (entry) looked.push(entry.nodeId);
          } catch (e) {
            // gone since readdir (or unreadable): list the name without an entry
            core.log('readdirplus: lookup %d/%s failed: %s', header.nodeId, d.name, (e as Error).message);
          }
        }
        w.addPlus(d, entry, core.timeouts);
      }
    } catch (e) {
      for (const n of looked) core.fs.forget(n, 1);
      throw e;
    }
    return { reply: w.finish(), undo: () => { for (const n of looked) core.fs.forget(n, 1); } };
  },
  async RELEASEDIR(core, { header, body }) {
    await core.fs.releasedir(body.fh);
    return { reply: encodeEmpty(header.unique) };
  },
  async FSYNCDIR(core, { header, body }) {
    await core.fs.fsyncdir(body.fh, body.datasync);
    return { reply: encodeEmpty(header.unique) };
  },
  async ACCESS(core, { header, body }, ctx) {
    await core.fs.access(ctx, header.nodeId, body.mask);
    return { reply: encodeEmpty(header.unique) };
  },
  async DESTROY(core, { header }) {
    await core.fs.destroy();
    return { reply: encodeEmpty(header.unique) };
  },
  async FALLOCATE(core, { header, body }) {
    await core.fs.fallocate(body.fh, body.mode, body.offset, body.length);
    return { reply: encodeEmpty(header.unique) };
  },
  async LSEEK(core, { header, body }) {
    return { reply: encodeLseek(header.unique, await core.fs.lseek(body.fh, body.offset, body.whence)) };
  },
  async COPY_FILE_RANGE(core, { header, body }) {
    if (body.flags !== 0n) fail(E.EINVAL);
    const n = await core.fs.copyFileRange(body.fhIn, body.offIn, body.fhOut, body.offOut, body.len);
    return { reply: encodeWrite(header.unique, n) };
  },
};
