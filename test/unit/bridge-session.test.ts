// The FUSE session's passthrough backing ids, notifications, reader start and end,
// and request counters, against a fake filesystem and transport.
import t from 'tap';
import {
  ALL_OFFERED, E, FakeFs, FakeTransport, attr, cstr, errorOf, frame, initFrame, openIn, releaseIn, setup, u32, u64,
} from '../lib/bridge-fixture';
import { FOPEN, Opcode, Size } from '../../src/fuse/wire/protocol';
import { FuseSession } from '../../src/fuse/bridge';
import type { Attr, Ctx, FileSystemApi, OpenResult, XattrAnswers } from '../../src/fuse/api';

t.test('passthrough: reuse of one backing id per node, fallbacks', async (t) => {
  const { fs, tr, s } = await setup();
  const open = async (node: number, r: OpenResult): Promise<{ flags: number; backing: number; fh: number }> => {
    fs.opens.push(r);
    await s.handleRequest(3, frame(Opcode.OPEN, node, openIn(0)));
    const b = tr.last().buf;
    t.equal(errorOf(tr.last()), 0);
    const flags = b.readUInt32LE(24);
    t.ok(flags & FOPEN.NOFLUSH, 'no FLUSH on close');
    return { fh: Number(b.readBigUInt64LE(16)), flags: flags & ~FOPEN.NOFLUSH, backing: b.readInt32LE(28) };
  };
  const release = (fh: number) => s.handleRequest(3, frame(Opcode.RELEASE, 0, releaseIn(fh)));
  tr.keys.set(100, 'lower:1').set(101, 'lower:1').set(102, 'upper:1');

  const a = await open(7, { fh: 1, backingFd: 100 });
  t.same([a.flags, a.backing], [FOPEN.PASSTHROUGH, 1], 'first open: passthrough');
  const b = await open(7, { fh: 2, backingFd: 101 });
  t.same([b.flags, b.backing], [FOPEN.PASSTHROUGH, 1], 'same real file: same backing id');
  t.same(tr.backingOpens, [100], 'registered once');
  // after copy-up the node is opened on another real file while our count still holds
  // handles of the old one (their RELEASE may simply not have arrived yet): it gets a
  // backing id of its own; the kernel is the judge of whether the old ones are still open
  const c = await open(7, { fh: 3, backingFd: 102 });
  t.same([c.flags, c.backing], [FOPEN.PASSTHROUGH, 2], 'other real file: a backing id of its own');
  t.same(tr.backingOpens, [100, 102], 'registered');
  const nb = await open(7, { fh: 4, keepCache: true });
  t.same([nb.flags, nb.backing], [FOPEN.KEEP_CACHE, 0], 'no backing fd: a plain open');

  await release(1);
  t.same(tr.backingCloses, [], 'still one handle on the first backing id');
  await release(2);
  t.same(tr.backingCloses, [1], 'first backing id closed with its last handle');
  t.equal(s.passthrough.backingOf(7), 2, 'the node now reuses the second');
  await release(3);
  await release(4);
  t.same(tr.backingCloses, [1, 2]);
  t.same(fs.called('release'), [[1], [2], [3], [4]], 'every handle reaches release');
  t.same(s.passthrough.stats(), { nodes: 0, handles: 0, backings: 0 });

  const d = await open(9, { fh: 4, directIo: true });
  t.equal(d.flags, FOPEN.DIRECT_IO, 'direct io asked by the filesystem');
  const d2 = await open(9, { fh: 10, backingFd: 100 });
  t.equal(d2.flags, FOPEN.PASSTHROUGH, 'direct io handles do not block passthrough');
  await release(4);
  await release(10);

  const e = await open(8, { fh: 5, keepCache: true });
  t.equal(e.flags, FOPEN.KEEP_CACHE, 'plain cached open');
  const f = await open(8, { fh: 6, backingFd: 102 });
  t.same([f.flags, f.backing], [0, 0], 'node with cached opens does not start passthrough');
  await release(5);
  await release(6);
  const g = await open(8, { fh: 7, backingFd: 102 });
  t.same([g.flags, g.backing], [FOPEN.PASSTHROUGH, 4], 'after they are closed it may');
  await release(7);
  t.same(tr.backingCloses, [1, 2, 3, 4]);

  // CREATE goes through the same registry
  fs.opens.push({ fh: 8, backingFd: 100 });
  await s.handleRequest(3, frame(Opcode.CREATE, 1, Buffer.concat([u32(0o101, 0o100644, 0o22, 0), cstr('newfile')])));
  const cb = tr.last().buf;
  t.equal(cb.readUInt32LE(Size.OUT_HEADER + Size.ENTRY_OUT + 8), FOPEN.PASSTHROUGH | FOPEN.NOFLUSH);
  t.equal(cb.readInt32LE(Size.OUT_HEADER + Size.ENTRY_OUT + 12), 5);
});

t.test('passthrough not negotiated: backing fds are ignored', async (t) => {
  const { fs, tr, s } = await setup({ isRoot: false });
  fs.opens.push({ fh: 1, backingFd: 100, keepCache: true });
  await s.handleRequest(3, frame(Opcode.OPEN, 7, openIn(0)));
  t.equal(tr.last().buf.readUInt32LE(Size.OUT_HEADER + 8), FOPEN.KEEP_CACHE | FOPEN.NOFLUSH);
  t.same(tr.backingOpens, []);
});

t.test('passthrough: a failing BACKING_OPEN falls back to a cached open', async (t) => {
  const { fs, tr, s } = await setup();
  tr.backingOpen = () => { throw Object.assign(new Error('EPERM'), { errno: E.EPERM }); };
  fs.opens.push({ fh: 1, backingFd: 100 });
  await s.handleRequest(3, frame(Opcode.OPEN, 7, openIn(0)));
  t.equal(errorOf(tr.last()), 0);
  t.equal(tr.last().buf.readUInt32LE(Size.OUT_HEADER + 8), FOPEN.NOFLUSH);
});

t.test('notify is sent later, never synchronously', async (t) => {
  const { tr, s } = await setup();
  const n = tr.written.length;
  const p = s.notify.invalEntry(1, 'foo');
  const q = s.notify.delete(1, 7, 'foo');
  const r = s.notify.invalInode(7, -1, 0);
  t.equal(tr.written.length, n, 'nothing written yet');
  t.same(await Promise.all([p, q, r]), [true, true, true]);
  t.same(tr.written.slice(n).map((w) => [w.fd, w.buf.readInt32LE(4), w.buf.readBigUInt64LE(8)]), [[3, 3, 0n], [3, 6, 0n], [3, 2, 0n]]);
  tr.failNext = E.ENOENT;
  t.equal(await s.notify.invalEntry(1, 'x'), false, 'a refused notify resolves false');
});

t.test('start: the device fd is read on the JS thread; the session ends with its reader', async (t) => {
  const fs = new FakeFs();
  const tr = new FakeTransport();
  const s = new FuseSession({ devFd: 3, fs, transport: tr, isRoot: true, debug: () => undefined });
  let ended = false;
  s.on('end', () => (ended = true));
  const done = s.start();
  const rd = tr.readers!;
  t.same(rd.fds, [3], 'the device fd alone');
  rd.onBatch([{ fd: 3, buf: initFrame(45, ALL_OFFERED) }, { fd: 3, buf: frame(Opcode.LOOKUP, 1, cstr('foo')) }]);
  await s.ready();
  await new Promise((r) => setImmediate(r));
  t.same(tr.written.map((w) => w.fd), [3, 3], 'INIT and LOOKUP answered');
  rd.onEnd(3, 0);
  await done;
  t.ok(ended, "'end' emitted");
  t.ok(tr.stopped, 'poller stopped');
  t.same(tr.closed, [], 'nothing to close');
  t.equal(fs.called('destroy').length, 1, 'filesystem destroyed');
});

t.test('requests read are counted by opcode', async (t) => {
  const fs = new FakeFs();
  const tr = new FakeTransport();
  const s = new FuseSession({ devFd: 3, fs, transport: tr, isRoot: true, debug: () => undefined });
  const done = s.start();
  const rd = tr.readers!;
  t.same(s.requestCounts(), {}, 'nothing read yet');
  rd.onBatch([{ fd: 3, buf: initFrame(45, ALL_OFFERED) }]);
  await s.ready();
  rd.onBatch([
    { fd: 3, buf: frame(Opcode.LOOKUP, 1, cstr('foo')) },
    { fd: 3, buf: frame(Opcode.LOOKUP, 1, cstr('absent')) },
    { fd: 3, buf: frame(Opcode.GETATTR, 7, Buffer.alloc(16)) },
    { fd: 3, buf: frame(4000, 1, Buffer.alloc(0)) },
    { fd: 3, buf: Buffer.alloc(3) },
  ]);
  await new Promise((r) => setImmediate(r));
  t.same(s.requestCounts(), { INIT: 1, LOOKUP: 2, GETATTR: 1, 'OP_63+': 1, OP_0: 1 },
    'by name; unknown large opcodes share one slot; a frame too short to hold one counts as 0');
  rd.onEnd(3, 0);
  await done;
});

t.test('what the filesystem knows of xattrs goes to the readers, which requestCounts includes', async (t) => {
  const tr = new FakeTransport();
  let answers: XattrAnswers | undefined;
  const fs = Object.assign(new FakeFs(), { setXattrAnswers: (a: XattrAnswers) => void (answers = a) });
  const answer = (node: number, none: boolean): void => answers!.set(node, none);
  const s = new FuseSession({ devFd: 3, fs, transport: tr, isRoot: true, debug: () => undefined });
  t.type(answers, 'object', 'the filesystem got the way to say it');
  answer(9, true);
  t.same([...tr.known], [], 'nothing before the readers start');
  const done = s.start();
  const rd = tr.readers!;
  rd.onBatch([{ fd: 3, buf: initFrame(45, ALL_OFFERED) }]);
  await s.ready();
  answer(7, true);
  answer(8, true);
  t.same([...tr.known], [7, 8], 'told to the readers, node by node');
  answer(7, false);
  t.same([...tr.known], [8], 'and taken back');
  tr.answered = [5, 2];
  rd.onBatch([{ fd: 3, buf: frame(Opcode.GETXATTR, 8, Buffer.concat([u32(0, 0), cstr('user.a')])) }]);
  await new Promise((r) => setImmediate(r));
  t.same(s.requestCounts(), { INIT: 1, GETXATTR: 6, LISTXATTR: 2 }, 'the readers\' answers counted with the requests read');
  t.same(s.answeredByReaders(), { GETXATTR: 5, LISTXATTR: 2, nodes: 1 });
  t.equal(answers!.answered(), 7, 'the filesystem can ask how many');
  rd.onEnd(3, 0);
  await done;
  answer(8, false);
  t.same([...tr.known], [8], 'nothing told once the connection ended');
});

t.test('when every request is logged, the readers answer none themselves', async (t) => {
  let answer: unknown;
  const fs = Object.assign(new FakeFs(), { setXattrAnswers: (a: unknown) => void (answer = a) });
  const log = Object.assign(() => undefined, { enabled: true });
  new FuseSession({ devFd: 3, fs, transport: new FakeTransport(), isRoot: true, debug: log });
  t.equal(answer, undefined, 'not handed over');
});

t.test('importing the bridge does not load the addon', async (t) => {
  const keys = Object.keys(require.cache);
  t.ok(keys.some((k) => /src[\\/]fuse[\\/]bridge[\\/]session/.test(k)), 'the bridge is in the module cache');
  t.same(keys.filter((k) => k.endsWith('.node') || /src[\\/]native[\\/]index/.test(k)), [], 'the addon is not');
});

t.test('passthrough: a lower file\'s backing id outlives its last release until FORGET, copy-up or the limit', async (t) => {
  const { fs, tr, s } = await setup();
  const open = async (node: number, r: OpenResult): Promise<number> => {
    fs.opens.push(r);
    await s.handleRequest(3, frame(Opcode.OPEN, node, openIn(0)));
    t.equal(errorOf(tr.last()), 0);
    return tr.last().buf.readInt32LE(28);
  };
  const release = (fh: number) => s.handleRequest(3, frame(Opcode.RELEASE, 0, releaseIn(fh)));
  tr.keys.set(100, 'lower:1').set(101, 'upper:1').set(102, 'lower:2').set(103, 'lower:3');

  t.equal(await open(7, { fh: 1, backingFd: 100, backingKey: '7:lower', keepBacking: true }), 1);
  await release(1);
  t.same(tr.backingCloses, [], 'kept after the last release');
  t.equal(s.passthrough.keptCount, 1);
  t.equal(await open(7, { fh: 2, backingFd: 100, backingKey: '7:lower', keepBacking: true }), 1, 'the next open reuses it');
  t.same(tr.backingOpens, [100], 'one BACKING_OPEN for two opens (failed before: two)');
  await release(2);
  t.equal(await open(7, { fh: 3, backingFd: 101, backingKey: '7:upper' }), 2, 'copied up: the upper file gets its own');
  t.same(tr.backingCloses, [1], 'and the kept lower one is closed');
  await release(3);
  t.same(tr.backingCloses, [1, 2], 'an upper file\'s id is not kept');

  t.equal(await open(8, { fh: 4, backingFd: 102, backingKey: '8:lower', keepBacking: true }), 3);
  await release(4);
  await s.handleRequest(3, frame(Opcode.FORGET, 8, u64(1)));
  t.same(tr.backingCloses, [1, 2, 3], 'FORGET closes it');

  t.equal(await open(9, { fh: 5, backingFd: 103, backingKey: '9:lower', keepBacking: true }), 4);
  await s.handleRequest(3, frame(Opcode.BATCH_FORGET, 0, Buffer.concat([u32(1, 0), u64(9, 1)])));
  await release(5);
  t.same(tr.backingCloses, [1, 2, 3, 4], 'a node forgotten before its RELEASE is not kept');

  s.passthrough.keptMax = 1;
  t.equal(await open(10, { fh: 6, backingFd: 100, backingKey: '10:lower', keepBacking: true }), 5);
  t.equal(await open(11, { fh: 7, backingFd: 102, backingKey: '11:lower', keepBacking: true }), 6);
  await release(6);
  await release(7);
  t.same(tr.backingCloses, [1, 2, 3, 4, 5], 'over the limit the least recently released goes');
  t.equal(s.passthrough.keptCount, 1);

  fs.opens.push({ fh: 8, keepCache: true });
  await s.handleRequest(3, frame(Opcode.OPEN, 11, openIn(0)));
  t.equal(await open(11, { fh: 9, backingFd: 102, backingKey: '11:lower', keepBacking: true }), 0, 'a node with a cached open stands does not take its kept id');
  t.same(tr.backingOpens.length, 6, 'nor registers another');

  const done = s.start();
  tr.readers!.onEnd(3, 0);
  await done;
  t.same(tr.backingCloses, [1, 2, 3, 4, 5, 6], 'the end of the connection closes the kept one (the kernel would keep it with the device fd)');
});

t.test('a reply that comes after the connection ended is not written (the device fd is closed then, its number reused)', async (t) => {
  let finish!: (a: Attr) => void;
  const fs = new FakeFs();
  const plain = fs.getattr.bind(fs);
  // node 7 is answered later, as by a handler that waits on the thread pool
  (fs as FileSystemApi).getattr = (c: Ctx, node: number) => (node === 7 ? new Promise<Attr>((r) => (finish = r)) : plain(c, node));
  const tr = new FakeTransport();
  const s = new FuseSession({ devFd: 3, fs, transport: tr, isRoot: true, debug: () => undefined });
  const done = s.start();
  const rd = tr.readers!;
  rd.onBatch([{ fd: 3, buf: initFrame(45, ALL_OFFERED) }]);
  await s.ready();
  rd.onBatch([{ fd: 3, buf: frame(Opcode.GETATTR, 7, Buffer.alloc(16)) }]);
  await new Promise((r) => setImmediate(r));
  const n = tr.written.length;
  rd.onEnd(3, E.ENODEV);
  await done;
  finish(attr(7));
  await new Promise((r) => setImmediate(r));
  t.equal(tr.written.length, n, 'the late GETATTR reply is dropped');
  t.equal(await s.notify.invalEntry(1, 'x'), false, 'a notify after the end writes nothing');
  t.equal(tr.written.length, n, 'nothing written');
});
