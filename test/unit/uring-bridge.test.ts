// The session's FUSE-over-io_uring transport with a fake device and ring: INIT asks for
// the ring only when the kernel offers it (and uring is not off), the ring is registered
// after the INIT reply, replies to requests from the ring go back to the ring entry, and
// a ring the kernel refuses leaves the session on /dev/fuse.
import t from 'tap';
import { constants } from 'node:os';
import { format } from 'node:util';
import { FuseSession, type FuseTransport } from '../../src/fuse/bridge';
import type { FileSystemApi } from '../../src/fuse/api';
import { InitFlag, KERNEL_MINOR_VERSION, KERNEL_VERSION, Opcode, Size } from '../../src/fuse/wire/protocol';
import { initIn, requestFrame } from '../../src/fuse/wire/request';
import type { BatchHandler } from '../../src/fuse/bridge/transport';

const E = constants.errno;

let unique = 500n;
const frame = (opcode: number, body: Buffer): Buffer => requestFrame(opcode, 1, (unique += 2n), { uid: 0, gid: 0, pid: 0 }, body);
const initFrame = (flags: bigint): Buffer => frame(Opcode.INIT, initIn(KERNEL_VERSION, KERNEL_MINOR_VERSION, flags));
const OFFERED = InitFlag.INIT_EXT | InitFlag.MAX_PAGES | InitFlag.ASYNC_READ;

interface Event { what: string; fd?: number; buf?: Buffer }
class FakeRing implements Partial<FuseTransport> {
  events: Event[] = [];
  refuse: number | null = null;
  cannotMake: number | null = null;
  onBatch: BatchHandler | undefined;
  writev(fd: number, bufs: Buffer[]): number {
    this.events.push({ what: 'writev', fd, buf: Buffer.concat(bufs) });
    return 0;
  }
  ringStart(_devFd: number, _perQueue: number, maxWrite: number, maxPages: number, onBatch: BatchHandler): { handle: unknown; queues: number } {
    if (this.cannotMake !== null) throw Object.assign(new Error('io_uring_setup'), { errno: this.cannotMake, code: 'EPERM' });
    this.events.push({ what: `ringStart ${maxWrite} ${maxPages}` });
    this.onBatch = onBatch;
    return { handle: 'ring', queues: 2 };
  }
  ringRegister(handle: unknown): void {
    if (this.refuse !== null) throw Object.assign(new Error('refused'), { errno: this.refuse, code: 'EOPNOTSUPP' });
    this.events.push({ what: `ringRegister ${String(handle)}` });
  }
  ringStop(handle: unknown): void {
    this.events.push({ what: `ringStop ${String(handle)}` });
  }
  ringCommit(handle: unknown, token: number, bufs: Buffer[]): void {
    this.events.push({ what: `commit ${String(handle)}`, fd: token, buf: Buffer.concat(bufs) });
  }
}

const fs = { init: async () => undefined, destroy: async () => undefined } as unknown as FileSystemApi;

async function session(ring: FakeRing, offered: bigint, uring?: 'auto' | 'off'): Promise<{ s: FuseSession; logs: string[] }> {
  const logs: string[] = [];
  const s = new FuseSession({ devFd: 3, fs, uring, transport: ring, debug: (fmt: string, ...args: unknown[]) => void logs.push(format(fmt, ...args)) });
  await s.handleRequest(3, initFrame(offered));
  return { s, logs };
}
const replyFlags = (buf: Buffer): bigint =>
  BigInt(buf.readUInt32LE(Size.OUT_HEADER + 12)) | (BigInt(buf.readUInt32LE(Size.OUT_HEADER + 32)) << 32n);

t.test('offered: asked for in INIT, registered after the reply, replies go to the ring', async (t) => {
  const ring = new FakeRing();
  const { s, logs } = await session(ring, OFFERED | InitFlag.OVER_IO_URING);
  t.same(ring.events.map((e) => e.what), ['ringStart 1048576 256', 'writev', 'ringRegister ring'],
    'the ring is made, the INIT reply written to the device, then the ring registered');
  t.not(replyFlags(ring.events[1].buf as Buffer) & InitFlag.OVER_IO_URING, 0n, 'INIT reply asks for FUSE_OVER_IO_URING');
  t.equal(s.transportName, 'io_uring');
  t.ok(logs.some((l) => l.includes('transport: io_uring')), 'the log says which transport runs');
  // a request from ring entry token -3: its reply is a commit into that entry, not a write
  const req = frame(9999, Buffer.alloc(0));
  ring.onBatch?.(Buffer.concat([Buffer.alloc(8), req]), Int32Array.from([-3, 8, req.length]), 1);
  const last = ring.events[ring.events.length - 1];
  t.equal(last.what, 'commit ring');
  t.equal(last.fd, -3, 'committed to the entry the request came in');
  t.equal(last.buf?.readInt32LE(4), -E.ENOSYS, 'the reply (ENOSYS for an unknown opcode)');
});

t.test('not offered (enable_uring off): /dev/fuse only', async (t) => {
  const ring = new FakeRing();
  const { s, logs } = await session(ring, OFFERED);
  t.same(ring.events.map((e) => e.what), ['writev'], 'no ring');
  t.equal(replyFlags(ring.events[0].buf as Buffer) & InitFlag.OVER_IO_URING, 0n, 'not asked for');
  t.equal(s.transportName, '/dev/fuse');
  t.ok(logs.some((l) => l.includes('transport: /dev/fuse (the kernel did not offer FUSE_OVER_IO_URING)')));
});

t.test('uring=off: not asked for even when offered', async (t) => {
  const ring = new FakeRing();
  const { s } = await session(ring, OFFERED | InitFlag.OVER_IO_URING, 'off');
  t.same(ring.events.map((e) => e.what), ['writev']);
  t.equal(replyFlags(ring.events[0].buf as Buffer) & InitFlag.OVER_IO_URING, 0n);
  t.equal(s.transportName, '/dev/fuse');
});

t.test('a ring that cannot be made is not asked for (the kernel would hold every request)', async (t) => {
  const ring = new FakeRing();
  ring.cannotMake = E.EPERM;
  const { s, logs } = await session(ring, OFFERED | InitFlag.OVER_IO_URING);
  t.same(ring.events.map((e) => e.what), ['writev']);
  t.equal(replyFlags(ring.events[0].buf as Buffer) & InitFlag.OVER_IO_URING, 0n, 'INIT reply does not ask for it');
  t.equal(s.transportName, '/dev/fuse');
  t.equal(s.negotiated?.uring, false);
  t.ok(logs.some((l) => l.includes('transport: /dev/fuse (the ring could not be made: EPERM')), logs.join('\n'));
});

t.test('refused by the kernel: the session stays on /dev/fuse', async (t) => {
  const ring = new FakeRing();
  ring.refuse = E.EOPNOTSUPP;
  const { s, logs } = await session(ring, OFFERED | InitFlag.OVER_IO_URING);
  t.equal(s.transportName, '/dev/fuse');
  t.ok(logs.some((l) => l.includes('transport: /dev/fuse (the kernel refused the ring: EOPNOTSUPP')), logs.join('\n'));
  await s.handleRequest(3, frame(9999, Buffer.alloc(0)));
  t.equal(ring.events[ring.events.length - 1].what, 'writev', 'replies go to the device');
});
