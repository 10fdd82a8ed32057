/**
 * FUSE over io_uring as the session's second transport (Linux 6.14+, the fuse module's
 * `enable_uring`): which transport a connection uses, and the ring's start and stop.
 *
 * INIT always comes through /dev/fuse. When the kernel offered FUSE_OVER_IO_URING and
 * the session asked for it, the ring is registered right after the INIT reply (the
 * kernel holds every later request until each CPU's queue has an entry, and falls back
 * to /dev/fuse by itself when a registration fails). FORGET and INTERRUPT still come
 * through /dev/fuse reads, and notifications are still written there, so the device
 * poller keeps running beside the ring. Requests from the ring carry a negative fd (the
 * entry's token): their replies go back into the entry, not to the device.
 */
import { errnoName, toErrno } from '../../errors';
import { MAX_PAGES, MAX_WRITE } from '../wire/protocol';
import type { BatchHandler, FuseTransport } from './transport';

/** the transport requests come through, as the daemon reports it */
export type TransportName = 'io_uring' | '/dev/fuse';

/**
 * Ring entries per queue (one queue per possible CPU): the requests of one CPU that can
 * wait for their reply at once. Each has a payload buffer of max_write (1 MiB), touched
 * only as far as requests and replies use it.
 */
export const RING_ENTRIES_PER_QUEUE = 8;

export interface RingStarted {
  ok: true;
  handle: unknown;
  queues: number;
}

export interface RingRefused {
  ok: false;
  /** the kernel's errno name, or the message */
  reason: string;
}

/**
 * Makes the ring and its buffers, before the INIT reply asks for it: a connection that
 * agreed on the ring gets no request until the ring is registered, so a ring that cannot
 * be made must not be asked for. `known`: the answers it gives itself (the readers' set).
 */
export function makeRing(transport: FuseTransport, devFd: number, onBatch: BatchHandler,
  onEnd: (errno: number) => void, known?: unknown): RingStarted | RingRefused {
  try {
    const r = transport.ringStart(devFd, RING_ENTRIES_PER_QUEUE, MAX_WRITE, MAX_PAGES, onBatch, onEnd, known);
    return { ok: true, handle: r.handle, queues: r.queues };
  } catch (e) {
    return { ok: false, reason: why(e) };
  }
}

/**
 * Hands the ring to the kernel, after the INIT reply; undefined, or why the kernel
 * refused it (it then goes on through /dev/fuse by itself).
 */
export function registerRing(transport: FuseTransport, handle: unknown): string | undefined {
  try {
    transport.ringRegister(handle);
    return undefined;
  } catch (e) {
    return why(e);
  }
}

function why(e: unknown): string {
  return `${errnoName(toErrno(e))} (${(e as Error).message})`;
}

/** a request read from the ring (its fd is an entry token) */
export function isRingToken(fd: number): boolean {
  return fd < 0;
}
