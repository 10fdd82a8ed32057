/**
 * A mount's first requests without a kernel, for `npm run build`'s code cache (the
 * server's warm-up.ts gives it a scratch overlay): a FuseSession is handed request
 * frames as the device poller hands them over (FuseSessionOptions.transport) and its
 * replies are taken, so that the session's decode, handlers and reply encoding, and the
 * filesystem's code behind them, run as in a mount's first walk. Nothing is mounted and
 * /dev/fuse is not opened.
 */
import { constants as fsc } from 'node:fs';
import { constants } from 'node:os';
import type { FileSystemApi } from '../api';
import { InitFlag, KERNEL_MINOR_VERSION, KERNEL_VERSION, Opcode, Size } from '../wire/protocol';
import { cstr, initIn, lastPlusOffset, openIn, readIn, releaseIn, requestFrame, u32, u64, writeIn } from '../wire/request';
import { threadAffinity } from './affinity';
import { FuseSession } from './session';
import type { BatchHandler } from './transport';

/** what a kernel offers at INIT, io_uring aside (the warm-up has no ring) */
const OFFERED = Object.values(InitFlag).reduce((a, b) => a | b, 0n) & ~InitFlag.INIT_RESERVED & ~InitFlag.OVER_IO_URING;

/** the requests' caller: this process, as a mount's first requests come from its mounter */
const CALLER = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0, pid: process.pid };

/** the fake device's fd number: above any fd limit, so no real fd can have it */
const DEVICE_FD = 1 << 30;

/** a request left unanswered this long ends the warm-up (a bug: every request here is answered) */
const REPLY_WAIT_MS = 10_000;

/** The session and a device of frames: `ask` sends one request and resolves with its reply. */
class FakeDevice {
  private unique = 0n;
  private onBatch: BatchHandler | undefined;
  private onEnd: ((fd: number, errno: number) => void) | undefined;
  private readonly waiting = new Map<bigint, (reply: Buffer) => void>();
  readonly session: FuseSession;
  readonly ended: Promise<void>;

  constructor(fs: FileSystemApi) {
    this.session = new FuseSession({
      devFd: DEVICE_FD,
      fs,
      uring: 'off',
      affinity: threadAffinity(),
      isRoot: process.getuid?.() === 0,
      transport: {
        startReaders: (_fds, onBatch, onEnd) => {
          this.onBatch = onBatch;
          this.onEnd = onEnd;
          return undefined;
        },
        stopReaders: () => undefined,
        writev: (_fd, bufs) => {
          const reply = Buffer.concat(bufs);
          const unique = reply.readBigUInt64LE(8);
          this.waiting.get(unique)?.(reply);
          this.waiting.delete(unique);
          return reply.length;
        },
        backingOpen: () => 1,
        backingClose: () => undefined,
      },
    });
    this.ended = this.session.start();
  }

  /** one request frame, handed over as the poller does (in a reused area, with its index) */
  send(opcode: number, nodeId: number, ...body: Buffer[]): bigint {
    const unique = (this.unique += 2n);
    const frame = requestFrame(opcode, nodeId, unique, CALLER, ...body);
    (this.onBatch as BatchHandler)(frame, Int32Array.of(DEVICE_FD, 0, frame.length), 1);
    return unique;
  }

  /** sends a request that is answered; resolves with the reply (rejects when none comes) */
  ask(opcode: number, nodeId: number, ...body: Buffer[]): Promise<Buffer> {
    // its reply may be written before send() returns
    const unique = this.unique + 2n;
    const reply = new Promise<Buffer>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no reply to opcode ${opcode}`)), REPLY_WAIT_MS);
      this.waiting.set(unique, (r) => {
        clearTimeout(timer);
        resolve(r);
      });
    });
    this.send(opcode, nodeId, ...body);
    return reply;
  }

  end(): Promise<void> {
    this.onEnd?.(DEVICE_FD, constants.errno.ENODEV);
    return this.ended;
  }
}

/** the reply's error (0 or a negative errno) */
const errorOf = (reply: Buffer): number => reply.readInt32LE(4);
/** the node id of an entry reply, the fh of an open reply (both come first after the header) */
const firstU64 = (reply: Buffer): number => Number(reply.readBigUInt64LE(Size.OUT_HEADER));

function check(reply: Buffer, what: string): Buffer {
  if (errorOf(reply) !== 0) throw new Error(`${what}: error ${-errorOf(reply)}`);
  return reply;
}

/** what the filesystem holds: a directory with a file, and a symlink beside it */
export interface FirstRequestNames { dir: string; file: string; link: string }

/**
 * The requests of a mount and its first walk, served by `fs` (whose root holds `names`):
 * INIT, the root's attributes, a missing name, a listing, a symlink, a file's xattrs, a read, a write
 * (a copy-up where the file is a lower one), FORGETs, DESTROY, the connection's end.
 * Rejects when a request that must succeed fails.
 */
export async function serveFirstRequests(fs: FileSystemApi, names: FirstRequestNames): Promise<void> {
  const dev = new FakeDevice(fs);
  const { O_RDONLY, O_RDWR, O_DIRECTORY } = fsc;
  const ROOT = 1;

  check(await dev.ask(Opcode.INIT, 0, initIn(KERNEL_VERSION, KERNEL_MINOR_VERSION, OFFERED)), 'INIT');
  await dev.ask(Opcode.GETATTR, ROOT, u32(0, 0), u64(0));
  await dev.ask(Opcode.LOOKUP, ROOT, cstr('missing'));
  // the first OPENDIR is refused (ENOSYS: the kernel lists without opening from then on, no_opendir)
  await dev.ask(Opcode.OPENDIR, ROOT, openIn(O_RDONLY | O_DIRECTORY));
  const end = lastPlusOffset(check(await dev.ask(Opcode.READDIRPLUS, ROOT, readIn(0, 0, 4096)), 'READDIRPLUS'));
  await dev.ask(Opcode.READDIRPLUS, ROOT, readIn(0, end, 4096));
  await dev.ask(Opcode.READDIR, ROOT, readIn(0, 0, 4096));
  const etc = firstU64(check(await dev.ask(Opcode.LOOKUP, ROOT, cstr(names.dir)), 'LOOKUP'));
  const name = firstU64(check(await dev.ask(Opcode.LOOKUP, ROOT, cstr(names.link)), 'LOOKUP'));
  await dev.ask(Opcode.READLINK, name);
  const file = firstU64(check(await dev.ask(Opcode.LOOKUP, etc, cstr(names.file)), 'LOOKUP'));
  await dev.ask(Opcode.GETXATTR, file, u32(0, 0), cstr('security.capability'));
  // the list of its names, its size first then the names (llistxattr: containers-storage's
  // diff of a build step asks both of every entry of the parent image)
  await dev.ask(Opcode.LISTXATTR, file, u32(0, 0));
  await dev.ask(Opcode.LISTXATTR, file, u32(4096, 0));
  const fh = firstU64(check(await dev.ask(Opcode.OPEN, file, openIn(O_RDONLY)), 'OPEN'));
  await dev.ask(Opcode.READ, file, readIn(fh, 0, 4096));
  await dev.ask(Opcode.FLUSH, file, u64(fh, 0, 0));
  await dev.ask(Opcode.RELEASE, file, releaseIn(fh));
  // a copy-up: the lower file opened for writing, written, closed
  const wfh = firstU64(check(await dev.ask(Opcode.OPEN, file, openIn(O_RDWR)), 'OPEN for writing'));
  const data = cstr('warm');
  check(await dev.ask(Opcode.WRITE, file, writeIn(wfh, 0, data)), 'WRITE');
  await dev.ask(Opcode.RELEASE, file, releaseIn(wfh));
  await dev.ask(Opcode.STATFS, ROOT);
  dev.send(Opcode.FORGET, name, u64(1));
  dev.send(Opcode.BATCH_FORGET, 0, u32(2, 0), u64(file, 1, etc, 1));
  await dev.ask(Opcode.DESTROY, 0);
  await dev.end();
}
