/**
 * The device operations the bridge needs, behind one interface so unit tests can run
 * with a fake (no addon, no mount). The default implementation calls the native addon,
 * which is loaded on first use only: importing the bridge never loads it.
 */
import type { PollerHandle, UringHandle } from '../../native/addon';
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
  startReaders(fds: number[], onBatch: BatchHandler, onEnd: (fd: number, errno: number) => void): unknown;
  stopReaders(handle: unknown): void;
  /**
   * What the readers answer of a node themselves, without onBatch: every GETXATTR with
   * ENODATA (`noValues`), every LISTXATTR with an empty list (`noNames`); both false,
   * nothing. Requests of the io_uring transport always go to onBatch.
   */
  knownXattrs(handle: unknown, node: number, noValues: boolean, noNames: boolean): void;
  /** requests the readers answered themselves, and the nodes they know answers of: [GETXATTR, LISTXATTR, nodes] */
  knownAnswered(handle: unknown): [number, number, number];
  /**
   * FUSE over io_uring beside the device reads (uring.ts); its requests come to onBatch
   * in the same shape, with a negative fd (a ring entry token), and are answered with
   * ringCommit. ringStart makes the ring (before the INIT reply), ringRegister hands it
   * to the kernel (after it) and throws the kernel's errno when it refuses.
   */
  ringStart(devFd: number, perQueue: number, maxWrite: number, maxPages: number, onBatch: BatchHandler,
    onEnd: (errno: number) => void): { handle: unknown; queues: number };
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
  startReaders: (fds, onBatch, onEnd) => {
    // allocated once per reader group, shared with the poller for its whole life
    const area = Buffer.allocUnsafeSlow(AREA_SIZE);
    const index = new Int32Array(3 * BATCH_MAX);
    const { native } = loadNative();
    // one poll per sleep, not a zero-timeout one before it (the addon's loopIdleMetricsOff)
    native.loopIdleMetricsOff();
    return native.fuseStartPoller(fds, READ_BUFFER_SIZE, area, index, (n) => onBatch(area, index, n), onEnd);
  },
  stopReaders: (handle) => loadNative().native.fuseStopPoller(handle as PollerHandle),
  knownXattrs: (handle, node, noValues, noNames) => loadNative().native.fuseKnown(handle as PollerHandle, node, noValues, noNames),
  knownAnswered: (handle) => loadNative().native.fuseKnownAnswered(handle as PollerHandle),
  ringStart: (devFd, perQueue, maxWrite, maxPages, onBatch, onEnd) => {
    const area = Buffer.allocUnsafeSlow(AREA_SIZE);
    const index = new Int32Array(3 * BATCH_MAX);
    loadNative().native.loopIdleMetricsOff();
    return loadNative().native.fuseUringStart(devFd, perQueue, maxWrite, maxPages, area, index, (n) => onBatch(area, index, n), onEnd);
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

/** readers that answer nothing themselves (the default beside readers of a test's own) */
const answerNothing = {
  knownXattrs: (): void => undefined,
  knownAnswered: (): [number, number, number] => [0, 0, 0],
};

/**
 * `partial` over the native defaults. Methods are looked up on every call, so a class
 * instance (prototype methods) works and can be changed after the session was built.
 * Readers of the caller's own (startReaders) answer nothing themselves unless it also
 * gives knownXattrs.
 */
export function makeTransport(partial: Partial<FuseTransport> = {}): FuseTransport {
  const p = partial;
  const n = nativeTransport;
  const ownReaders = (): Pick<FuseTransport, 'knownXattrs' | 'knownAnswered'> => (p.startReaders === undefined ? n : answerNothing);
  return {
    writev: (fd, bufs) => (p.writev ?? n.writev).call(p, fd, bufs),
    startReaders: (fds, onBatch, onEnd) => (p.startReaders ?? n.startReaders).call(p, fds, onBatch, onEnd),
    stopReaders: (h) => (p.stopReaders ?? n.stopReaders).call(p, h),
    knownXattrs: (h, node, noValues, noNames) => (p.knownXattrs ?? ownReaders().knownXattrs).call(p, h, node, noValues, noNames),
    knownAnswered: (h) => (p.knownAnswered ?? ownReaders().knownAnswered).call(p, h),
    ringStart: (devFd, perQueue, maxWrite, maxPages, onBatch, onEnd) => (p.ringStart ?? n.ringStart).call(p, devFd, perQueue, maxWrite, maxPages, onBatch, onEnd),
    ringRegister: (h) => (p.ringRegister ?? n.ringRegister).call(p, h),
    ringCommit: (h, token, bufs) => (p.ringCommit ?? n.ringCommit).call(p, h, token, bufs),
    ringStop: (h) => (p.ringStop ?? n.ringStop).call(p, h),
    backingOpen: (devFd, fd) => (p.backingOpen ?? n.backingOpen).call(p, devFd, fd),
    backingClose: (devFd, id) => (p.backingClose ?? n.backingClose).call(p, devFd, id),
    fileKey: (fd) => (p.fileKey ?? n.fileKey).call(p, fd),
    close: (fd) => (p.close ?? n.close).call(p, fd),
  };
}
