/**
 * One FUSE connection: the device fd read from the event loop, INIT negotiation,
 * dispatch of every request to the FileSystemApi, replies written to the fd the request
 * came from.
 *
 * Nothing a request carries can crash the session: decode errors are answered EIO
 * (when the unique is readable), handler errors with toErrno(e), unknown opcodes with
 * ENOSYS. When a reply cannot be written (the kernel refuses it with ENOENT because the
 * request was interrupted, or the write fails), the handler's `undo` takes back what the
 * reply would have handed out (a lookup count, an open handle).
 *
 * State:
 * - `inflight`: the set of uniques of requests being handled. Only INTERRUPT reads it: an
 *   interrupt for a request we are handling is ignored (handlers run to completion), one
 *   for a request not seen yet is answered EAGAIN so the kernel sends it again later.
 * - `negotiated`: set once by INIT; read by decode (SETXATTR_EXT layout) and handlers.
 */
import { EventEmitter } from 'node:events';
import createDebug from 'debug';
import type { Ctx, FileSystemApi, NodeId } from '../api';
import { E, errnoName, toErrno } from '../../errors';
import type { Int64 } from '../../int64';
import { decode, headerPid, type DecodeOptions, type InHeader, type Request } from '../wire/decode';
import { encodeError, encodeInit, type Reply } from '../wire/encode';
import { InitFlag, Opcode, opcodeName, initFlagNames, Size } from '../wire/protocol';
import { handlers, isThenable, type Core, type HandlerTable, type Outcome } from './dispatch';
import { negotiate, type Negotiated } from './init';
import { Notifier } from './notify';
import { PassthroughRegistry } from './passthrough';
import { NoSetid } from './setattr';
import type { ThreadAffinity } from './affinity';
import { makeTransport, type FuseTransport } from './transport';
import { isRingToken, makeRing, registerRing, RING_ENTRIES_PER_QUEUE, type RingStarted, type TransportName } from './uring';

export type Logger = (fmt: string, ...args: unknown[]) => void;

export interface FuseSessionOptions {
  /** the /dev/fuse fd of the mounted connection */
  devFd: number;
  fs: FileSystemApi;
  /** 'auto': passthrough when running as root and the kernel offers it (default) */
  passthrough?: 'auto' | 'off';
  /**
   * 'on': writeback cache when passthrough is not in use and the kernel offers it.
   * Default 'off': with it the kernel acknowledges writes the upper may have no room for
   * (README "Decisions").
   */
  writeback?: 'on' | 'off';
  /** let the kernel enforce and cache POSIX ACLs (FUSE_POSIX_ACL; default true) */
  acl?: boolean;
  /** FUSE over io_uring when the kernel offers it ('auto', default), or /dev/fuse only */
  uring?: 'auto' | 'off';
  /** CAP_SYS_ADMIN available (needed for passthrough) */
  isRoot?: boolean;
  /**
   * Seconds the kernel may cache attributes (GETATTR/SETATTR and every entry; default 1).
   * The bridge alone decides the kernel's cache timeouts: the filesystem returns none.
   */
  attrTimeout?: number;
  /** seconds the kernel may cache a name, or its absence (default: attrTimeout) */
  entryTimeout?: number;
  debug?: Logger;
  /**
   * moves the JS thread to the CPU the requests come from (affinity.ts; shared by the
   * sessions of one process); absent: the thread's CPUs are left alone
   */
  affinity?: ThreadAffinity;
  /** device operations; defaults to the native addon (loaded on first use) */
  transport?: Partial<FuseTransport>;
}

/** decode options, one object each (none made per request) */
const PLAIN: DecodeOptions = { setxattrExt: false, copyData: false };
const EXT: DecodeOptions = { setxattrExt: true, copyData: false };
const REUSED: DecodeOptions = { setxattrExt: false, copyData: true };
const EXT_REUSED: DecodeOptions = { setxattrExt: true, copyData: true };

const NO_REPLY = new Set<number>([Opcode.FORGET, Opcode.BATCH_FORGET, Opcode.INTERRUPT]);

/** opcodes counted one by one; every opcode from OPCODE_SLOTS - 1 up shares the last slot */
const OPCODE_SLOTS = 64;

export class FuseSession extends EventEmitter {
  readonly devFd: number;
  readonly notify: Notifier;
  private readonly fs: FileSystemApi;
  private readonly transport: FuseTransport;
  private readonly log: Logger;
  private readonly opts: FuseSessionOptions;
  private readonly registry: PassthroughRegistry;
  private readonly inflight = new Set<Int64>();
  private core: Core | undefined;
  private negotiatedState: Negotiated | undefined;
  private destroyed = false;
  /**
   * The connection has ended: nothing is written to the device fd any more (its owner
   * closes it then, and the number may soon name another mount's device).
   */
  private closed = false;
  private started: Promise<void> | undefined;
  /** the answers the readers and the ring give themselves (transport.knownSet), once started */
  private known: unknown;
  /** the io_uring transport's handle, once registered (uring.ts) */
  private ring: unknown;
  private transportInUse: TransportName = '/dev/fuse';
  /** log every request (only when the logger says it is enabled: DEBUG=stratafs:fuse) */
  private readonly trace: boolean;
  /** requests read, by opcode (index: opcode; larger opcodes share the last slot) */
  private readonly counts = new Float64Array(OPCODE_SLOTS);
  private readonly affinity: ThreadAffinity | undefined;

  constructor(opts: FuseSessionOptions) {
    super();
    this.opts = opts;
    this.devFd = opts.devFd;
    this.fs = opts.fs;
    this.transport = makeTransport(opts.transport);
    this.log = opts.debug ?? createDebug('stratafs:fuse');
    this.trace = (this.log as { enabled?: boolean }).enabled === true;
    this.affinity = opts.affinity;
    this.registry = new PassthroughRegistry(
      {
        backingOpen: (fd) => this.transport.backingOpen(this.devFd, fd),
        backingClose: (id) => this.transport.backingClose(this.devFd, id),
        fileKey: (fd) => this.transport.fileKey(fd),
      },
      false,
      this.log,
    );
    this.notify = new Notifier((bufs) => {
      if (this.closed) throw new Error('the connection has ended');
      void this.transport.writev(this.devFd, bufs);
    }, this.log);
    // attributes only, at once: the caller's next stat must not see the old ones
    this.fs.setInvalidator?.((node) => void this.notify.invalAttrsNow(node));
    // xattr requests whose answer the filesystem knows are answered by the readers
    // themselves (native-bindings/src/fuse_known.c); when tracing, every request is logged
    if (!this.trace) {
      this.fs.setXattrAnswers?.({
        set: (node, none) => this.knownXattrs(node, none),
        answered: () => {
          const a = this.answeredByReaders();
          return a.GETXATTR + a.LISTXATTR;
        },
      });
    }
  }

  private knownXattrs(node: NodeId, none: boolean): void {
    if (this.known !== undefined && !this.closed) this.transport.knownXattrs(this.known, node, none);
  }

  /** what INIT settled on (undefined before INIT) */
  get negotiated(): Negotiated | undefined {
    return this.negotiatedState;
  }

  /**
   * Requests read so far, by opcode name (only those seen), for the statistics line the
   * daemon prints on SIGUSR2 and at exit with -d: the request mix of a workload.
   */
  requestCounts(): Record<string, number> {
    const out: Record<string, number> = {};
    const counts = Float64Array.from(this.counts);
    // with those the readers answered themselves
    const answered = this.answeredByReaders();
    counts[Opcode.GETXATTR] += answered.GETXATTR;
    counts[Opcode.LISTXATTR] += answered.LISTXATTR;
    for (let op = 0; op < OPCODE_SLOTS; op++) {
      const n = counts[op] as number;
      if (n > 0) out[op === OPCODE_SLOTS - 1 ? `OP_${op}+` : opcodeName(op)] = n;
    }
    return out;
  }

  /**
   * Requests the device readers answered themselves (FileSystemApi.setXattrAnswers), which
   * requestCounts includes, and the nodes whose answers they know now.
   */
  answeredByReaders(): { GETXATTR: number; LISTXATTR: number; nodes: number } {
    const [values, names, nodes] = this.known === undefined ? [0, 0, 0] : this.transport.knownAnswered(this.known);
    return { GETXATTR: values, LISTXATTR: names, nodes };
  }

  /** the transport requests come through (io_uring only once INIT agreed on it) */
  get transportName(): TransportName {
    return this.transportInUse;
  }

  /** the passthrough registry (exposed for diagnostics and tests) */
  get passthrough(): PassthroughRegistry {
    return this.registry;
  }

  /**
   * Starts reading the device. Resolves (and emits 'end') when the reader has ended,
   * i.e. the kernel closed the connection (unmount: ENODEV).
   */
  start(): Promise<void> {
    this.started ??= new Promise<void>((resolve) => {
      const onEnd = (fd: number, errno: number): void => {
        this.closed = true;
        this.log('reader on fd %d ended (%s)', fd, errno === 0 ? 'clean' : errnoName(errno));
        setImmediate(() => {
          try {
            this.transport.stopReaders(handle);
            if (this.ring !== undefined) this.transport.ringStop(this.ring);
          } catch (e) {
            this.log('stopping the reader: %s', (e as Error).message);
          }
          void this.finish().then(() => {
            this.emit('end');
            resolve();
          });
        });
      };
      // what the readers answer themselves: none while every request is logged
      this.known = this.trace ? undefined : this.transport.knownSet();
      const handle: unknown = this.transport.startReaders([this.devFd], (area, index, n) => this.onBatch(area, index, n), onEnd, this.known);
    });
    return this.started;
  }

  /** The connection is gone: the filesystem closes its layers, whether or not INIT completed. */
  private async finish(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    this.registry.end();
    try {
      await this.fs.destroy();
    } catch (e) {
      this.log('destroy: %s', (e as Error).message);
    }
  }

  /**
   * One wake-up's requests, in the transport's reused area (see BatchHandler): each is
   * decoded in place, and everything a handler keeps past this call is a copy.
   */
  private onBatch(area: Buffer, index: Int32Array, n: number): void {
    const counts = this.counts;
    const aff = this.affinity;
    // the sender of the first request, before its reply wakes it: the CPU it last ran
    // on is the one it sent from
    if (aff !== undefined && aff.due(n) && (index[2] as number) >= Size.IN_HEADER) aff.sample(headerPid(area, index[1] as number));
    for (let i = 0; i < n; i++) {
      const fd = index[3 * i] as number;
      const at = index[3 * i + 1] as number;
      const len = index[3 * i + 2] as number;
      // the opcode is the u32 at offset 4 of every frame; a frame too short is counted as 0
      const op = len >= 8 ? area.readUInt32LE(at + 4) : 0;
      counts[op < OPCODE_SLOTS ? op : OPCODE_SLOTS - 1]++;
      try {
        const p = this.dispatch(fd, area, at, len, true);
        if (p) p.catch(this.failedOutside);
      } catch (e) {
        this.failedOutside(e);
      }
    }
  }

  private readonly failedOutside = (e: unknown): void => this.log('request failed outside its handler: %s', e);

  /** writes a reply; false when the kernel refused it (ENOENT: interrupted) or it failed */
  private send(fd: number, reply: Reply): boolean {
    if (this.closed) return false;
    try {
      if (isRingToken(fd)) this.transport.ringCommit(this.ring, fd, reply);
      else this.transport.writev(fd, reply);
      return true;
    } catch (e) {
      const errno = toErrno(e);
      if (errno !== E.ENOENT) this.log('reply write on fd %d failed: %s', fd, (e as Error).message);
      return false;
    }
  }

  /**
   * Handles one request frame read from `fd`; resolves once its reply (if any) was
   * written. Never rejects.
   */
  handleRequest(fd: number, buf: Buffer): Promise<void> {
    try {
      return Promise.resolve(this.dispatch(fd, buf, 0, buf.length, false));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /**
   * Handles the request frame of `len` bytes at `at` of `buf`: synchronously when its
   * handler finishes synchronously (the reply is written when this returns), else a
   * promise of the written reply. `reused`: the buffer is overwritten after this returns,
   * so the data a handler keeps is copied. Throws or rejects only on a bug outside the
   * handler.
   */
  private dispatch(fd: number, buf: Buffer, at: number, len: number, reused: boolean): void | Promise<void> {
    const opts = reused ? (this.negotiatedState?.setxattrExt ? EXT_REUSED : REUSED) : (this.negotiatedState?.setxattrExt ? EXT : PLAIN);
    const res = decode(buf, opts, at, len);
    if (!res.ok) {
      const h = res.error.header;
      this.log('bad request frame: %s', res.error.message);
      if (h && !NO_REPLY.has(h.opcode)) this.send(fd, encodeError(h.unique, E.EIO));
      return;
    }
    const req = res.req;
    const { header, body } = req;
    if (body.kind === 'INIT') {
      return this.init(fd, req as Request<Extract<typeof body, { kind: 'INIT' }>>).catch((e: unknown) => {
        // never leave the kernel waiting for the INIT reply: the mount would hang
        this.log('INIT failed: %s', (e as Error)?.message ?? e);
        this.send(fd, encodeError(header.unique, E.EPROTO));
      });
    }
    if (body.kind === 'INTERRUPT') {
      if (!this.inflight.has(body.target)) this.send(fd, encodeError(header.unique, E.EAGAIN));
      return;
    }
    const core = this.core;
    if (!core) {
      this.log('%s before INIT', opcodeName(header.opcode));
      if (!NO_REPLY.has(header.opcode)) this.send(fd, encodeError(header.unique, E.EIO));
      return;
    }
    if (body.kind === 'unknown') {
      this.log('unsupported opcode %s', opcodeName(header.opcode));
      this.send(fd, encodeError(header.unique, E.ENOSYS));
      return;
    }
    if (body.kind === 'DESTROY') this.destroyed = true;
    if (this.trace) this.log('%s #%s node %d', body.kind, header.unique, header.nodeId);
    const ctx: Ctx = { uid: header.uid, gid: header.gid, pid: header.pid };
    const handler = handlers[body.kind] as HandlerTable['LOOKUP'];
    let outcome: Outcome | null | Promise<Outcome | null>;
    try {
      outcome = handler(core, req as Request<Extract<typeof body, { kind: 'LOOKUP' }>>, ctx);
    } catch (e) {
      this.failed(fd, header, body.kind, e);
      return;
    }
    if (!isThenable(outcome)) return this.reply(fd, body.kind, outcome);
    // only a request still being handled can be interrupted (see the header)
    const unique = header.unique;
    this.inflight.add(unique);
    return outcome.then(
      (o) => {
        this.inflight.delete(unique);
        return this.reply(fd, body.kind, o);
      },
      (e: unknown) => {
        this.inflight.delete(unique);
        this.failed(fd, header, body.kind, e);
      },
    );
  }

  /** the handler failed: its error becomes the reply */
  private failed(fd: number, header: InHeader, kind: string, e: unknown): void {
    const errno = toErrno(e);
    if (errno === E.EIO || errno === E.ENOSYS) this.log('%s node %d: %s', kind, header.nodeId, (e as Error)?.stack ?? e);
    this.send(fd, encodeError(header.unique, errno));
  }

  /** writes the handler's reply; when the kernel does not take it, its undo runs */
  private reply(fd: number, kind: string, outcome: Outcome | null): void | Promise<void> {
    if (!outcome) return;
    if (this.send(fd, outcome.reply) || !outcome.undo) return;
    const logUndo = (e: unknown): void => this.log('undo of %s failed: %s', kind, (e as Error).message);
    try {
      const r = outcome.undo();
      if (isThenable(r)) return r.catch(logUndo);
    } catch (e) {
      logUndo(e);
    }
  }

  private async init(fd: number, req: Request<{ kind: 'INIT'; major: number; minor: number; maxReadahead: number; flags: bigint }>): Promise<void> {
    const { header, body } = req;
    const decision = negotiate(body, {
      isRoot: this.opts.isRoot ?? false,
      passthrough: this.opts.passthrough ?? 'auto',
      writeback: this.opts.writeback ?? 'off',
      acl: this.opts.acl ?? true,
      uring: this.opts.uring ?? 'auto',
      listsWithoutOpen: this.fs.listsWithoutOpen === true,
    });
    if (decision.kind === 'error') {
      this.log('INIT: %s', decision.reason);
      this.send(fd, encodeError(header.unique, E.EPROTO));
      return;
    }
    if (decision.kind === 'retry') {
      this.send(fd, encodeInit(header.unique, decision.out));
      return;
    }
    let n = decision.negotiated;
    // the ring is made before the reply asks for it (uring.ts)
    let ring: RingStarted | undefined;
    let why = 'the kernel did not offer FUSE_OVER_IO_URING';
    if (n.uring) {
      const r = makeRing(this.transport, this.devFd, (area, index, count) => this.onBatch(area, index, count),
        (errno) => this.log('io_uring transport stopped serving (%s)', errnoName(errno)), this.known);
      if (r.ok) {
        ring = r;
      } else {
        why = `the ring could not be made: ${r.reason}`;
        n = { ...n, uring: false, flags: n.flags & ~InitFlag.OVER_IO_URING };
        decision.out.flags = n.flags;
      }
    }
    this.log('INIT kernel %d.%d offers [%s]; using 7.%d [%s]', body.major, body.minor,
      initFlagNames(body.flags).join(' '), n.minor, initFlagNames(n.flags).join(' '));
    const reply = encodeInit(header.unique, decision.out);
    const core: Core = {
      fs: this.fs,
      timeouts: {
        attr: this.opts.attrTimeout ?? 1,
        entry: this.opts.entryTimeout ?? this.opts.attrTimeout ?? 1,
      },
      registry: this.registry,
      killprivV2: n.killprivV2,
      noSetid: new NoSetid(),
      dontMask: n.dontMask,
      noOpendir: n.noOpendir,
      log: this.log,
    };
    // the filesystem learns the mode before the kernel can send its first request
    try {
      await this.fs.init({ passthrough: n.passthrough, writebackCache: n.writebackCache });
    } catch (e) {
      this.log('fs.init failed: %s', (e as Error)?.message ?? e);
      if (ring) this.transport.ringStop(ring.handle);
      this.send(fd, encodeError(header.unique, toErrno(e)));
      return;
    }
    this.negotiatedState = n;
    this.registry.enabled = n.passthrough;
    this.core = core;
    this.send(fd, reply);
    if (ring) {
      const refused = registerRing(this.transport, ring.handle);
      if (refused === undefined) {
        this.ring = ring.handle;
        this.transportInUse = 'io_uring';
      } else {
        why = `the kernel refused the ring: ${refused}`;
      }
    }
    this.log('transport: %s', this.transportInUse === 'io_uring'
      ? `io_uring (${ring?.queues ?? 0} queue(s) of ${RING_ENTRIES_PER_QUEUE} entries)` : `/dev/fuse (${why})`);
    this.emit('init', n);
  }

  /** resolves when INIT has been answered (for callers that wait for the mount to be live) */
  ready(): Promise<Negotiated> {
    if (this.negotiatedState) return Promise.resolve(this.negotiatedState);
    return new Promise((resolve) => this.once('init', resolve));
  }
}
