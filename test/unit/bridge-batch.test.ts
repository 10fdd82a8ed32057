/**
 * Requests handed over in a transport's reused read area (BatchHandler): frames packed
 * at offsets, each answered on its own fd, and whatever a handler keeps past the batch
 * (WRITE data, SETXATTR values, names) still holds its own bytes after the next batch
 * overwrote the area, as it does when the thread pool reads a write's data later.
 */
import t from 'tap';
import { constants } from 'node:os';
import { FuseSession, type BatchHandler, type FuseTransport } from '../../src/fuse/bridge';
import { InitFlag, KERNEL_MINOR_VERSION, KERNEL_VERSION, Opcode } from '../../src/fuse/wire/protocol';
import { cstr, initIn, requestFrame, u32, writeIn } from '../../src/fuse/wire/request';
import type { FileSystemApi } from '../../src/fuse/api';

const E = constants.errno;

const NOBODY = { uid: 0, gid: 0, pid: 0 };
let nextUnique = 10n;
const frame = (opcode: number, nodeId: number, body: Buffer): Buffer => requestFrame(opcode, nodeId, (nextUnique += 2n), NOBODY, body);
const initFrame = (): Buffer => {
  const all = Object.values(InitFlag).reduce((a, b) => a | b, 0n) & ~InitFlag.INIT_RESERVED;
  return frame(Opcode.INIT, 0, initIn(KERNEL_VERSION, KERNEL_MINOR_VERSION, all));
};
/** fuse_write_in (fh 4 at `offset`) and the data */
const writeAt = (offset: number, data: Buffer): Buffer => writeIn(4, offset, data);
/** fuse_setxattr_in with the SETXATTR_EXT fields (negotiated: every flag is offered), name, value */
const setxattrIn = (name: string, value: Buffer): Buffer => Buffer.concat([u32(value.length, 0, 0, 0), cstr(name), value]);

/** a transport whose reads land in one area reused by every batch, as the native poller's do */
class AreaTransport implements Partial<FuseTransport> {
  readonly area = Buffer.alloc(64 * 1024);
  readonly index = new Int32Array(3 * 16);
  onBatch: BatchHandler | null = null;
  onEnd: ((fd: number, e: number) => void) | null = null;
  written: { fd: number; unique: bigint; error: number }[] = [];
  startReaders(_fds: number[], onBatch: BatchHandler, onEnd: (fd: number, e: number) => void): unknown {
    this.onBatch = onBatch;
    this.onEnd = onEnd;
    return 'handle';
  }
  stopReaders(): void {}
  writev(fd: number, bufs: Buffer[]): number {
    const b = Buffer.concat(bufs);
    this.written.push({ fd, unique: b.readBigUInt64LE(8), error: b.readInt32LE(4) });
    return b.length;
  }
  /** packs the frames one after the other (8-byte aligned) from offset 0 and hands them over */
  feed(frames: { fd: number; buf: Buffer }[]): void {
    this.area.fill(0xee);
    let off = 0;
    frames.forEach((f, i) => {
      f.buf.copy(this.area, off);
      this.index.set([f.fd, off, f.buf.length], 3 * i);
      off += (f.buf.length + 7) & ~7;
    });
    this.onBatch?.(this.area, this.index, frames.length);
  }
}

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve = (): void => undefined;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

t.test('what async handlers keep is theirs, not the reused area', async (t) => {
  const gate = deferred();
  const seen: string[] = [];
  // handlers that, like the thread pool, look at their data only after the batch returned
  const fs = {
    init: () => undefined,
    destroy: () => undefined,
    forget: () => undefined,
    async write(_fh: number, offset: number, data: Buffer) {
      await gate.promise;
      seen.push(`write ${offset} ${data.toString()}`);
      return data.length;
    },
    async setxattr(_ctx: unknown, node: number, name: string, value: Buffer) {
      await gate.promise;
      seen.push(`setxattr ${node} ${name}=${value.toString()}`);
    },
    async lookup(_ctx: unknown, parent: number, name: string) {
      await gate.promise;
      seen.push(`lookup ${parent} ${name}`);
      return null;
    },
  } as unknown as FileSystemApi;
  const tr = new AreaTransport();
  const s = new FuseSession({ devFd: 3, fs, transport: tr, debug: () => undefined });
  const done = s.start();
  tr.feed([{ fd: 3, buf: initFrame() }]);
  await s.ready();
  tr.written.length = 0;

  tr.feed([
    { fd: 3, buf: frame(Opcode.WRITE, 7, writeAt(0, Buffer.from('first-batch-write-a'))) },
    { fd: 5, buf: frame(Opcode.WRITE, 7, writeAt(100, Buffer.from('first-batch-write-b'))) },
    { fd: 3, buf: frame(Opcode.SETXATTR, 8, setxattrIn('user.one', Buffer.from('value-one'))) },
    { fd: 3, buf: frame(Opcode.LOOKUP, 1, cstr('name-one')) },
  ]);
  // the next batch overwrites the same bytes while the first batch's handlers still wait
  tr.feed([
    { fd: 3, buf: frame(Opcode.WRITE, 7, writeAt(0, Buffer.from('SECOND-BATCH-WRITE-'))) },
    { fd: 3, buf: frame(Opcode.SETXATTR, 8, setxattrIn('user.two', Buffer.from('VALUE-TWO'))) },
    { fd: 3, buf: frame(Opcode.LOOKUP, 1, cstr('NAME-TWO')) },
  ]);
  gate.resolve();
  for (let i = 0; i < 10 && tr.written.length < 7; i++) await new Promise((r) => setImmediate(r));
  t.same(seen.sort(), [
    'lookup 1 NAME-TWO',
    'lookup 1 name-one',
    'setxattr 8 user.one=value-one',
    'setxattr 8 user.two=VALUE-TWO',
    'write 0 SECOND-BATCH-WRITE-',
    'write 0 first-batch-write-a',
    'write 100 first-batch-write-b',
  ], 'every handler saw its own request bytes');
  t.equal(tr.written.length, 7, 'seven replies');
  t.same(tr.written.filter((w) => w.fd === 5).length, 1, 'the request read from fd 5 is answered on fd 5');
  t.same(tr.written.filter((w) => w.error !== 0).map((w) => w.error).sort(), [], 'no error replies');
  tr.onEnd?.(3, 0);
  await done;
});

t.test('frames at offsets of the area decode like frames of their own', async (t) => {
  const names: string[] = [];
  const fs = {
    init: () => undefined,
    destroy: () => undefined,
    forget: () => undefined,
    lookup(_ctx: unknown, parent: number, name: string) {
      names.push(`${parent}/${name}`);
      return null;
    },
  } as unknown as FileSystemApi;
  const tr = new AreaTransport();
  const s = new FuseSession({ devFd: 3, fs, transport: tr, entryTimeout: 0, debug: () => undefined });
  const done = s.start();
  tr.feed([{ fd: 3, buf: initFrame() }]);
  await s.ready();
  tr.written.length = 0;
  // odd lengths: every frame after the first starts at a padded offset
  const frames = ['a', 'bb', 'ccc', 'dddd-eeee'].map((n, i) => ({ fd: 3, buf: frame(Opcode.LOOKUP, 10 + i, cstr(n)) }));
  tr.feed(frames);
  t.same(names, ['10/a', '11/bb', '12/ccc', '13/dddd-eeee'], 'each name and node id read at its offset');
  t.same(tr.written.map((w) => w.unique), frames.map((f) => f.buf.readBigUInt64LE(8)), 'each answered with its unique, in order');
  t.ok(tr.written.every((w) => w.error === -E.ENOENT), 'ENOENT (negative entries off)');
  // a frame whose length field disagrees with what was read is answered EIO, the batch goes on
  const lying = frame(Opcode.LOOKUP, 1, cstr('x'));
  lying.writeUInt32LE(lying.length + 8, 0);
  tr.written.length = 0;
  tr.feed([{ fd: 3, buf: lying }, { fd: 3, buf: frame(Opcode.LOOKUP, 1, cstr('after')) }]);
  t.same(tr.written.map((w) => w.error), [-E.EIO, -E.ENOENT], 'EIO for the bad frame, the next one handled');
  tr.onEnd?.(3, 0);
  await done;
});
