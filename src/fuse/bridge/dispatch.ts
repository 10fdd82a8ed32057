/**
 * Opcode -> handler table. Each handler calls the FileSystemApi and returns the reply
 * to write (or null: FORGET and BATCH_FORGET are never answered). A handler may throw
 * anything: the session turns it into an error reply with toErrno().
 *
 * A handler whose filesystem calls finish synchronously (lookups, getattr, readdir, xattr
 * reads: answered from memory or by one syscall) returns its outcome synchronously too:
 * no promise, no microtask, the reply is written before the next request is decoded.
 * Only handlers that wait for the thread pool (copy-up, data, fsync) return a promise.
 *
 * `undo` runs when the reply could not be delivered (the request was interrupted and
 * the kernel answered the write with ENOENT): whatever the reply would have handed to
 * the kernel — lookup counts, open handles — is taken back so nothing leaks.
 */
import { constants as fsc } from 'node:fs';
import type { Awaitable, Ctx, DirEntryOut, Entry, FileSystemApi, NodeId, OpenResult } from '../api';
import type { CacheTimeouts } from '../wire/types';
import type { Int64 } from '../../int64';
import { fail, E } from '../../errors';
import type { Request, RequestBody, RequestKind } from '../wire/decode';
import {
  decodeDev, encodeAttr, encodeCreate, encodeData, encodeEmpty, encodeEntry, encodeLseek, encodeOpen,
  encodeReadlink, encodeStatfs, encodeWrite, encodeXattrSize, xattrList, type OpenOut, type Reply,
  encodeError, encodeNegativeEntry,
} from '../wire/encode';
import { DirentWriter, direntplusSize } from '../wire/dirent';
import { FOPEN, OPEN_KILL_SUIDGID, RENAME_FLAG, WRITE_KILL_SUIDGID } from '../wire/protocol';
import type { PassthroughRegistry } from './passthrough';
import { killSuidgid, setattrChanges, type NoSetid } from './setattr';

export interface Core {
  fs: FileSystemApi;
  /**
   * seconds the kernel may cache names (entries, and names that do not exist: 0 answers
   * ENOENT) and attributes; the bridge alone decides them (FuseSessionOptions)
   */
  timeouts: CacheTimeouts;
  registry: PassthroughRegistry;
  killprivV2: boolean;
  /** nodes without set-id bits: their KILL_SUIDGID writes need no getattr (setattr.ts) */
  noSetid: NoSetid;
  /** DONT_MASK negotiated: creations carry the caller's umask for the filesystem to apply */
  dontMask: boolean;
  /** OPENDIR answered ENOSYS: the kernel opens directories itself (init.ts) */
  noOpendir: boolean;
  log: (fmt: string, ...args: unknown[]) => void;
}

export interface Outcome {
  reply: Reply;
  undo?: () => void | Promise<void>;
}

type Body<K extends RequestKind> = Extract<RequestBody, { kind: K }>;
type Handler<K extends RequestKind> = (core: Core, req: Request<Body<K>>, ctx: Ctx) => Awaitable<Outcome | null>;
/** handled by the session itself */
type SessionKinds = 'INIT' | 'INTERRUPT' | 'unknown';
export type HandlerTable = { [K in Exclude<RequestKind, SessionKinds>]: Handler<K> };

/** a promise (or any thenable) rather than a value */
export function isThenable<T>(v: Awaitable<T>): v is Promise<T> {
  return typeof (v as { then?: unknown } | null | undefined)?.then === 'function';
}

/** f(v) at once when v is a value, after it settles when it is a promise */
function then<T, R>(v: Awaitable<T>, f: (x: T) => Awaitable<R>): Awaitable<R> {
  return isThenable(v) ? v.then(f) : f(v);
}

const empty = (unique: Int64) => (): Outcome => ({ reply: encodeEmpty(unique) });

const entryOutcome = (core: Core, unique: Int64, e: Entry): Outcome => ({
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

/** Synchronous unless a truncating open must first clear set-id bits. */
function openFile(core: Core, ctx: Ctx, node: NodeId, r: OpenResult, flags: number, openFlags: number): Awaitable<OpenOut> {
  if ((flags & fsc.O_TRUNC) !== 0 && (openFlags & OPEN_KILL_SUIDGID) !== 0 && core.killprivV2) {
    return (async () => {
      try {
        await killSuidgid(core.fs, ctx, node, core.noSetid, r.fh);
      } catch (e) {
        await core.fs.release(r.fh);
        throw e;
      }
      return registerOpen(core, node, r);
    })();
  }
  return registerOpen(core, node, r);
}

function registerOpen(core: Core, node: NodeId, r: OpenResult): OpenOut {
  // FLUSH does nothing here (no locks, data goes to the layer file as written): the
  // kernel need not send it on every close
  const out = core.registry.open(node, r);
  out.openFlags |= FOPEN.NOFLUSH;
  return out;
}

/**
 * A READDIRPLUS reply: each listed name with its entry, looked up in turn. Synchronous
 * while the lookups are; a lookup that returns a promise continues the fill after it.
 * A reply that is not delivered (or a fill that fails) gives back the lookups made.
 */
class PlusReply {
  private readonly looked: NodeId[] = [];

  constructor(
    private readonly core: Core,
    private readonly ctx: Ctx,
    private readonly dir: NodeId,
    private readonly entries: DirEntryOut[],
    private readonly w: DirentWriter,
  ) {}

  fill(from: number): Awaitable<Outcome> {
    try {
      for (let i = from; i < this.entries.length; i++) {
        const d = this.entries[i] as DirEntryOut;
        if (!this.w.fits(this.w.plusSize(d.name))) break;
        if (d.name === '.' || d.name === '..') {
          this.w.addPlus(d, null, this.core.timeouts);
          continue;
        }
        let found: Awaitable<Entry | null>;
        try {
          found = this.core.fs.lookup(this.ctx, this.dir, d.name);
        } catch (e) {
          this.missed(d, e);
          continue;
        }
        if (isThenable(found)) {
          return found.then((e) => this.add(d, e), (e: unknown) => this.missed(d, e)).then(() => this.fill(i + 1))
            .catch((e: unknown) => this.fail(e));
        }
        this.add(d, found);
      }
    } catch (e) {
      return this.fail(e);
    }
    const looked = this.looked;
    return { reply: this.w.finish(), undo: () => { for (const n of looked) this.core.fs.forget(n, 1); } };
  }

  private add(d: DirEntryOut, entry: Entry | null): void {
    if (entry) this.looked.push(entry.nodeId);
    this.w.addPlus(d, entry, this.core.timeouts);
  }

  /** gone since readdir (or unreadable): list the name without an entry */
  private missed(d: DirEntryOut, e: unknown): void {
    this.core.log('readdirplus: lookup %d/%s failed: %s', this.dir, d.name, (e as Error).message);
    this.w.addPlus(d, null, this.core.timeouts);
  }

  private fail(e: unknown): never {
    for (const n of this.looked.splice(0)) this.core.fs.forget(n, 1);
    throw e;
  }
}

/** the fewest body bytes a READDIRPLUS entry takes (a one-byte name) */
const PLUS_MIN = direntplusSize('.');

export const handlers: HandlerTable = {
  LOOKUP(core, { header, body }, ctx) {
    return then(core.fs.lookup(ctx, header.nodeId, body.name), (e) => {
      if (e === null) {
        return { reply: core.timeouts.entry > 0 ? encodeNegativeEntry(header.unique, core.timeouts.entry) : encodeError(header.unique, E.ENOENT) };
      }
      return entryOutcome(core, header.unique, e);
    });
  },
  FORGET(core, { header, body }) {
    core.noSetid.forget(header.nodeId);
    core.registry.forget(header.nodeId);
    core.fs.forget(header.nodeId, body.nlookup);
    return null;
  },
  BATCH_FORGET(core, { body }) {
    for (const { nodeId, nlookup } of body.items) {
      core.noSetid.forget(nodeId);
      core.registry.forget(nodeId);
      core.fs.forget(nodeId, nlookup);
    }
    return null;
  },
  GETATTR(core, { header, body }, ctx) {
    return then(core.fs.getattr(ctx, header.nodeId, body.fh), (attr) => ({ reply: encodeAttr(header.unique, attr, core.timeouts.attr) }));
  },
  async SETATTR(core, { header, body }, ctx) {
    const changes = await setattrChanges(core.fs, ctx, header.nodeId, body);
    if (changes.mode !== undefined || changes.uid !== undefined || changes.gid !== undefined) core.noSetid.clear();
    const attr = await core.fs.setattr(ctx, header.nodeId, changes);
    return { reply: encodeAttr(header.unique, attr, core.timeouts.attr) };
  },
  READLINK(core, { header }, ctx) {
    return then(core.fs.readlink(ctx, header.nodeId), (target) => ({ reply: encodeReadlink(header.unique, target) }));
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
  // synchronous for a read-only open (no copy-up): `tar` opens every file it reads
  OPEN(core, { header, body }, ctx) {
    return then(core.fs.open(ctx, header.nodeId, body.flags), (r) =>
      then(openFile(core, ctx, header.nodeId, r, body.flags, body.openFlags), (out) => ({
        reply: encodeOpen(header.unique, out),
        undo: async () => {
          core.registry.release(r.fh);
          await core.fs.release(r.fh);
        },
      })));
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
      await killSuidgid(core.fs, ctx, header.nodeId, core.noSetid, body.fh);
    }
    return { reply: encodeWrite(header.unique, await core.fs.write(body.fh, body.offset, body.data)) };
  },
  STATFS(core, { header }, ctx) {
    return then(core.fs.statfs(ctx, header.nodeId), (st) => ({ reply: encodeStatfs(header.unique, st) }));
  },
  RELEASE(core, { header, body }) {
    core.registry.release(body.fh);
    return then(core.fs.release(body.fh), empty(header.unique));
  },
  async FSYNC(core, { header, body }) {
    await core.fs.fsync(body.fh, body.datasync);
    return { reply: encodeEmpty(header.unique) };
  },
  async SETXATTR(core, { header, body }, ctx) {
    await core.fs.setxattr(ctx, header.nodeId, body.name, body.value, body.flags);
    return { reply: encodeEmpty(header.unique) };
  },
  GETXATTR(core, { header, body }, ctx) {
    return then(core.fs.getxattr(ctx, header.nodeId, body.name), (value) => {
      if (value === null) return { reply: encodeError(header.unique, E.ENODATA) };
      if (body.size === 0) return { reply: encodeXattrSize(header.unique, value.length) };
      if (value.length > body.size) fail(E.ERANGE);
      return { reply: encodeData(header.unique, value) };
    });
  },
  LISTXATTR(core, { header, body }, ctx) {
    return then(core.fs.listxattr(ctx, header.nodeId), (names) => {
      const list = xattrList(names);
      if (body.size === 0) return { reply: encodeXattrSize(header.unique, list.length) };
      if (list.length > body.size) fail(E.ERANGE);
      return { reply: encodeData(header.unique, list) };
    });
  },
  async REMOVEXATTR(core, { header, body }, ctx) {
    await core.fs.removexattr(ctx, header.nodeId, body.name);
    return { reply: encodeEmpty(header.unique) };
  },
  FLUSH(core, { header, body }) {
    return then(core.fs.flush(body.fh), empty(header.unique));
  },
  OPENDIR(core, { header }, ctx) {
    // once is enough: the kernel sends no OPENDIR (nor RELEASEDIR) after this answer
    if (core.noOpendir) return { reply: encodeError(header.unique, E.ENOSYS) };
    return then(core.fs.opendir(ctx, header.nodeId), (r) => ({
      reply: encodeOpen(header.unique, dirOpenOut(r)),
      undo: () => core.fs.releasedir(r.fh),
    }));
  },
  READDIR(core, { header, body }) {
    return then(core.fs.readdir(body.fh, body.offset, header.nodeId), (entries) => {
      const w = new DirentWriter(header.unique, body.size);
      for (const d of entries) if (!w.add(d)) break;
      return { reply: w.finish() };
    });
  },
  READDIRPLUS(core, { header, body }, ctx) {
    return then(core.fs.readdir(body.fh, body.offset, header.nodeId), (entries) => {
      const plus = new PlusReply(core, ctx, header.nodeId, entries, new DirentWriter(header.unique, body.size));
      const ahead = core.fs.prefetchLookups?.(header.nodeId, entries, Math.floor(body.size / PLUS_MIN));
      return ahead === undefined ? plus.fill(0) : ahead.then(() => plus.fill(0));
    });
  },
  RELEASEDIR(core, { header, body }) {
    return then(core.fs.releasedir(body.fh), empty(header.unique));
  },
  async FSYNCDIR(core, { header, body }) {
    await core.fs.fsyncdir(body.fh, body.datasync, header.nodeId);
    return { reply: encodeEmpty(header.unique) };
  },
  ACCESS(core, { header, body }, ctx) {
    return then(core.fs.access(ctx, header.nodeId, body.mask), empty(header.unique));
  },
  async DESTROY(core, { header }) {
    await core.fs.destroy();
    return { reply: encodeEmpty(header.unique) };
  },
  async FALLOCATE(core, { header, body }) {
    await core.fs.fallocate(body.fh, body.mode, body.offset, body.length);
    return { reply: encodeEmpty(header.unique) };
  },
  LSEEK(core, { header, body }) {
    return then(core.fs.lseek(body.fh, body.offset, body.whence), (off) => ({ reply: encodeLseek(header.unique, off) }));
  },
  async COPY_FILE_RANGE(core, { header, body }) {
    if (body.flags !== 0n) fail(E.EINVAL);
    const n = await core.fs.copyFileRange(body.fhIn, body.offIn, body.fhOut, body.offOut, body.len);
    return { reply: encodeWrite(header.unique, n) };
  },
};
