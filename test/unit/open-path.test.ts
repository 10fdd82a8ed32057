// The request path of a read-only OPEN (what `tar` sends for every file it reads):
// answered without a promise, and registered for passthrough without a stat of the
// backing fd when the filesystem names the real file (OpenResult.backingKey).
import t from 'tap';
import { constants as fsc } from 'node:fs';
import { handlers, isThenable, type Core } from '../../src/fuse/bridge/dispatch';
import { PassthroughRegistry, type PassthroughDevice } from '../../src/fuse/bridge/passthrough';
import { NoSetid } from '../../src/fuse/bridge/setattr';
import { FOPEN } from '../../src/fuse/wire/protocol';
import type { FileSystemApi, OpenResult } from '../../src/fuse/api';
import type { Request, RequestBody } from '../../src/fuse/wire/decode';

class CountingDevice implements PassthroughDevice {
  stats = 0;
  opened: number[] = [];
  closed: number[] = [];
  private next = 1;
  backingOpen(fd: number): number { this.opened.push(fd); return this.next++; }
  backingClose(id: number): void { this.closed.push(id); }
  fileKey(fd: number): string { this.stats++; return `stat${fd}`; }
}

t.test('a backing key from the filesystem: no stat of the fd, reuse and change by key', async (t) => {
  const dev = new CountingDevice();
  const reg = new PassthroughRegistry(dev, true);
  const a = reg.open(7, { fh: 1, backingFd: 100, backingKey: '7:lower' });
  const b = reg.open(7, { fh: 2, backingFd: 100, backingKey: '7:lower' });
  t.equal(dev.stats, 0, 'the fd is not stat-ed when the key is given');
  t.same([a.openFlags, a.backingId, b.backingId], [FOPEN.PASSTHROUGH, 1, 1], 'same key: one backing id');
  const c = reg.open(7, { fh: 3, backingFd: 101, backingKey: '7:upper' });
  t.same([c.openFlags, c.backingId], [FOPEN.PASSTHROUGH, 2], 'another key (after copy-up): a backing id of its own');
  t.same(dev.opened, [100, 101]);
  for (const fh of [1, 2, 3]) reg.release(fh);
  t.same(dev.closed, [1, 2], 'both closed with their last handle');
  reg.open(8, { fh: 4, backingFd: 102 });
  t.equal(dev.stats, 1, 'without a key the fd is stat-ed, as before');
});

const req = <B extends RequestBody>(nodeId: number, body: B): Request<B> => ({
  header: { len: 0, opcode: 14, unique: 5, nodeId, uid: 0, gid: 0, pid: 1, totalExtlen: 0 },
  body,
});

t.test('OPEN answers without a promise when the filesystem opens synchronously', async (t) => {
  const released: number[] = [];
  const fs = {
    open: (_c: unknown, _n: number, flags: number): OpenResult | Promise<OpenResult> =>
      (flags & fsc.O_TRUNC) !== 0 ? Promise.resolve({ fh: 2, backingFd: 11, backingKey: '9:upper' }) : { fh: 1, backingFd: 10, backingKey: '9:lower' },
    release: (fh: number) => { released.push(fh); },
  } as unknown as FileSystemApi;
  const dev = new CountingDevice();
  const core: Core = {
    fs, timeouts: { entry: 1, attr: 1 }, registry: new PassthroughRegistry(dev, true), killprivV2: true,
    noSetid: new NoSetid(), dontMask: false, noOpendir: false, log: () => undefined,
  };
  const ctx = { uid: 0, gid: 0, pid: 1 };
  const out = handlers.OPEN(core, req(9, { kind: 'OPEN', flags: fsc.O_RDONLY, openFlags: 0 }), ctx);
  t.notOk(isThenable(out), 'a read-only open: the outcome itself, not a promise');
  if (out === null || isThenable(out)) return;
  const reply = Buffer.concat(out.reply);
  t.equal(reply.readInt32LE(4), 0, 'no error');
  t.equal(reply.readUInt32LE(24), FOPEN.PASSTHROUGH | FOPEN.NOFLUSH, 'passthrough, no FLUSH');
  t.equal(dev.stats, 0, 'no stat of the backing fd');
  const later = handlers.OPEN(core, req(9, { kind: 'OPEN', flags: fsc.O_RDWR | fsc.O_TRUNC, openFlags: 0 }), ctx);
  t.ok(isThenable(later), 'an open the filesystem answers later: a promise');
  const o2 = await later;
  t.equal(Buffer.concat(o2!.reply).readInt32LE(28), 2, 'the upper copy: a backing id of its own');
  await out.undo?.();
  t.same(released, [1], 'undo of an undelivered reply releases the handle');
});
