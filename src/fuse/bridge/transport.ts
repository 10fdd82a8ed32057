/**
 * The device operations the bridge needs, behind one interface so unit tests can run
 * with a fake (no addon, no mount). The default implementation calls the native addon,
 * which is loaded on first use only: importing the bridge never loads it.
 */
import type { KnownSetHandle, PollerHandle, UringHandle } from '../../native/addon';
import { READ_BUFFER_SIZE } from '../wire/protocol';

/**
 * Requests read in one wake-up, in memory reused for the next one: request i came from
 * fd `index[3i]` and is the `index[3i + 2]` bytes at offset `index[3i + 1]` of `area`.
 * Whatever a handler keeps past onBatch must be copied (decode() does so with
 * `copyData`). Every transport hands its requests over in this shape.
 */
export type BatchHandler = (area: Buffer, index: Int32Array, count: number) => void;

/** requests per batch at most (the poller's own limit is the same) */
export const BATCH_MAX = 256;
/**
 * The area the native poller reads into: one full-size read (READ_BUFFER_SIZE, which the
 * kernel requires per read) plus room to pack the small requests of a batch after it.
 */
export const AREA_SIZE = READ_BUFFER_SIZE + 128 * 1024;

export interface FuseTransport {
  /** writev(2) of one reply to a device fd; throws (errno ENOENT) for an interrupted request */
  writev(fd: number, bufs: Buffer[]): number;
  /**
   * Reads requests on the JS thread, from the event loop (non-blocking reads, no thread
   * hand-off); `onBatch` gets every request read in one wake-up.
   */
  startReaders(fds: number[], onBatch: BatchHandler, onEnd: (fd: number, errno: number) => void, known?: unknown): unknown;
  stopReaders(handle: unknown): void;
  /**
   * A set of answers the readers and the ring give themselves (their `known`), without
   * onBatch: knownXattrs says which; undefined when the transport gives none.
   */
  knownSet(): unknown;
  /**
   * `none`: every GETXATTR of `node` answered ENODATA, every LISTXATTR an empty list;
   * false: onBatch gets them again.
   */
  knownXattrs(set: unknown, node: number, none: boolean): void;
  /** requests answered from the set, and the nodes in it: [GETXATTR, LISTXATTR, nodes] */
  knownAnswered(set: unknown): [number, number, number];
  /**
   * FUSE over io_uring beside the device reads (uring.ts); its requests come to onBatch
   * in the same shape, with a negative fd (a ring entry token), and are answered with
   * ringCommit. ringStart makes the ring (before the INIT reply), ringRegister hands it
   * to the kernel (after it) and throws the kernel's errno when it refuses.
   */
  ringStart(devFd: number, perQueue: number, maxWrite: number, maxPages: number, onBatch: BatchHandler,
    onEnd: (errno: number) => void, known?: unknown): { handle: unknown; queues: number };
  ringRegister(handle: unknown): void;
  ringCommit(handle: unknown, token: number, bufs: Buffer[]): void;
  ringStop(handle: unknown): void;
  /** FUSE_DEV_IOC_BACKING_OPEN; returns the backing id */
  backingOpen(devFd: number, fd: number): number;
  backingClose(devFd: number, backingId: number): void;
  /** identity of the real file behind `fd` ("dev:ino" of statx(fd, '', AT_EMPTY_PATH)) */
  fileKey(fd: number): string;
  close(fd: number): void;
}

type NativeModule = typeof import('../../native');
let nativeModule: NativeModule | undefined;

function loadNative(): NativeModule {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  nativeModule ??= require('../../native') as NativeModule;
  return nativeModule;
}

/** The addon-backed transport; nothing is loaded until a method is called. */
export const nativeTransport: FuseTransport = {
  writev: (fd, bufs) => loadNative().native.fuseWritev(fd, bufs),
  startReaders: (fds, onBatch, onEnd, known) => {
    // allocated once per reader group, shared with the poller for its whole life
    const area = Buffer.allocUnsafeSlow(AREA_SIZE);
    const index = new Int32Array(3 * BATCH_MAX);
    const { native } = loadNative();
    // one poll per sleep, not a zero-timeout one before it (the addon's loopIdleMetricsOff)
    native.loopIdleMetricsOff();
    return native.fuseStartPoller(fds, READ_BUFFER_SIZE, area, index, (n) => onBatch(area, index, n), onEnd, known as KnownSetHandle | undefined);
  },
  stopReaders: (handle) => loadNative().native.fuseStopPoller(handle as PollerHandle),
  knownSet: () => loadNative().native.fuseKnownSet(),
  knownXattrs: (set, node, none) => loadNative().native.fuseKnown(set as KnownSetHandle, node, none),
  knownAnswered: (set) => loadNative().native.fuseKnownAnswered(set as KnownSetHandle),
  ringStart: (devFd, perQueue, maxWrite, maxPages, onBatch, onEnd, known) => {
    const area = Buffer.allocUnsafeSlow(AREA_SIZE);
    const index = new Int32Array(3 * BATCH_MAX);
    loadNative().native.loopIdleMetricsOff();
    return loadNative().native.fuseUringStart(devFd, perQueue, maxWrite, maxPages, area, index, (n) => onBatch(area, index, n), onEnd,
      known as KnownSetHandle | undefined);
  },
  ringRegister: (handle) => loadNative().native.fuseUringRegister(handle as UringHandle),
  ringCommit: (handle, token, bufs) => void loadNative().native.fuseUringCommit(handle as UringHandle, token, bufs),
  ringStop: (handle) => loadNative().native.fuseUringStop(handle as UringHandle),
  backingOpen: (devFd, fd) => loadNative().native.fuseBackingOpen(devFd, fd),
  backingClose: (devFd, id) => loadNative().native.fuseBackingClose(devFd, id),
  fileKey: (fd) => {
    const { native, C } = loadNative();
    const st = native.statx(fd, '', C.AT_EMPTY_PATH);
    return `${st.devMajor}:${st.devMinor}:${st.ino}`;
  },
  close: (fd) => loadNative().native.close(fd),
};

/** a transport that answers nothing itself (the default beside readers of a caller's own) */
const answerNothing: Pick<FuseTransport, 'knownSet' | 'knownXattrs' | 'knownAnswered'> = {
  knownSet: () => undefined,
  knownXattrs: () => undefined,
  knownAnswered: () => [0, 0, 0],
};

/**
 * `partial` over the native defaults. Methods are looked up on every call, so a class
 * instance (prototype methods) works and can be changed after the session was built.
 * Readers of the caller's own (startReaders) answer nothing themselves unless it also
 * gives knownSet.
 */
export function makeTransport(partial: Partial<FuseTransport> = {}): FuseTransport {
  const p = partial;
  const n = nativeTransport;
  const known = (): Pick<FuseTransport, 'knownSet' | 'knownXattrs' | 'knownAnswered'> =>
    (p.knownSet !== undefined ? (p as FuseTransport) : p.startReaders === undefined ? n : answerNothing);
  return {
    writev: (fd, bufs) => (p.writev ?? n.writev).call(p, fd, bufs),
    startReaders: (fds, onBatch, onEnd, set) => (p.startReaders ?? n.startReaders).call(p, fds, onBatch, onEnd, set),
    stopReaders: (h) => (p.stopReaders ?? n.stopReaders).call(p, h),
    knownSet: () => known().knownSet.call(p),
    knownXattrs: (set, node, none) => known().knownXattrs.call(p, set, node, none),
    knownAnswered: (set) => known().knownAnswered.call(p, set),
    ringStart: (devFd, perQueue, maxWrite, maxPages, onBatch, onEnd, set) =>
      (p.ringStart ?? n.ringStart).call(p, devFd, perQueue, maxWrite, maxPages, onBatch, onEnd, set),
    ringRegister: (h) => (p.ringRegister ?? n.ringRegister).call(p, h),
    ringCommit: (h, token, bufs) => (p.ringCommit ?? n.ringCommit).call(p, h, token, bufs),
    ringStop: (h) => (p.ringStop ?? n.ringStop).call(p, h),
    backingOpen: (devFd, fd) => (p.backingOpen ?? n.backingOpen).call(p, devFd, fd),
    backingClose: (devFd, id) => (p.backingClose ?? n.backingClose).call(p, devFd, id),
    fileKey: (fd) => (p.fileKey ?? n.fileKey).call(p, fd),
    close: (fd) => (p.close ?? n.close).call(p, fd),
  };
}
