/**
 * The open that copies a file up gets the copy's fd as its handle (files.ts
 * openForWrite, copyup.ts copyFileWhole): the upper file is not opened again, and the
 * fd has what an open of it with the caller's flags would have had (access mode,
 * O_APPEND, O_NOATIME; an O_TRUNC open's new mtime). The syscalls are counted at the
 * addon's functions, through which the overlay makes every one of them.
 */
import t, { type Test } from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { native } from '../../../src/native';
import type { OverlayConfig } from '../../../src/overlay/config';
import { ctx, fixture, walk, workLeftovers, type Fixture } from './fixtures/helpers';

const O = fs.constants;
const ACCMODE = O.O_RDONLY | O.O_WRONLY | O.O_RDWR;
const LOWER = 'lower data\n';

/** Calls of the addon's fd-making and fd-changing functions, counted while `f` runs. */
async function counted<T>(f: () => T | Promise<T>): Promise<{ result: T; calls: Record<string, number> }> {
  const names = ['openat', 'close', 'setfl', 'ftruncate'] as const;
  const calls: Record<string, number> = {};
  const real = names.map((n) => native[n]);
  names.forEach((n, i) => {
    calls[n] = 0;
    const orig = real[i] as (...a: unknown[]) => unknown;
    (native as unknown as Record<string, unknown>)[n] = (...a: unknown[]): unknown => {
      calls[n] = (calls[n] ?? 0) + 1;
      return orig(...a);
    };
  });
  try {
    return { result: await f(), calls };
  } finally {
    names.forEach((n, i) => {
      (native as unknown as Record<string, unknown>)[n] = real[i];
    });
  }
}

/** The status flags of one of this process's fds (/proc/self/fdinfo). */
function fdFlags(fd: number): number {
  const m = /^flags:\s+([0-7]+)$/m.exec(fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'));
  if (!m) throw new Error(`no flags for fd ${fd}`);
  return parseInt(m[1] as string, 8);
}

async function lowerFiles(t: Test, extra: Partial<OverlayConfig> = {}): Promise<Fixture> {
  const f = await fixture(1, ([l0]) => {
    fs.mkdirSync(path.join(l0 as string, 'd'));
    for (const n of ['a', 'b', 'c', 'd/e', 's', 'p', 'q']) {
      const p = path.join(l0 as string, n);
      fs.writeFileSync(p, LOWER);
      fs.chmodSync(p, 0o640);
      fs.utimesSync(p, new Date('2001-02-03T04:05:06Z'), new Date('2001-02-03T04:05:06Z'));
    }
  }, false, extra);
  t.teardown(() => f.cleanup());
  return f;
}

t.test('an appending open that copies up keeps the copy as its handle', async (t) => {
  const f = await lowerFiles(t);
  const id = walk(f.ov, 'a');
  const { result: r, calls } = await counted(async () => {
    const r = await f.ov.open(ctx, id, O.O_WRONLY | O.O_APPEND);
    f.ov.release(r.fh);
    return r;
  });
  // the lower file and the copy are opened; the upper file is not opened again
  t.equal(calls.openat, 2, 'openat: the source and the copy, no reopen of the upper file');
  t.equal(calls.close, 2, 'close: the source, and the handle at release');
  t.equal(calls.setfl, 1, 'O_APPEND set on the copy once it is linked');
  t.equal(fs.readFileSync(path.join(f.upper, 'a'), 'utf8'), LOWER);
  t.ok(r.backingFd !== undefined, 'the handle offers its fd for passthrough');

  // an open kept open: its fd is the upper file, write-only and appending
  const b = walk(f.ov, 'b');
  const h = await f.ov.open(ctx, b, O.O_WRONLY | O.O_APPEND);
  const fd = h.backingFd as number;
  t.equal(fdFlags(fd) & ACCMODE, O.O_WRONLY, 'write-only as asked');
  t.not(fdFlags(fd) & O.O_APPEND, 0, 'O_APPEND');
  t.equal(fs.fstatSync(fd).ino, fs.statSync(path.join(f.upper, 'b')).ino, 'the fd is the upper file');
  // written at offset 0 by a caller that believed the file empty: O_APPEND puts it at the end
  await f.ov.write(h.fh, 0, Buffer.from('more\n'));
  f.ov.release(h.fh);
  const up = path.join(f.upper, 'b');
  t.equal(fs.readFileSync(up, 'utf8'), `${LOWER}more\n`, 'appended after the copied data');
  t.equal(fs.statSync(up).mode & 0o7777, 0o640, 'mode copied');
  t.same(workLeftovers(f.work), [], 'nothing left in the work dir');
});

t.test('read-write, truncating and synchronous opens that copy up', async (t) => {
  const f = await lowerFiles(t);
  // O_RDWR: the copy is opened read-write and reads the copied data
  const c = walk(f.ov, 'c');
  const rw = await counted(() => f.ov.open(ctx, c, O.O_RDWR));
  t.equal(rw.calls.openat, 2, 'O_RDWR: no reopen');
  t.equal(rw.calls.setfl, 0, 'nothing to set');
  t.equal(fdFlags(rw.result.backingFd as number) & ACCMODE, O.O_RDWR);
  t.equal((await f.ov.read(rw.result.fh, 0, 100)).toString(), LOWER, 'reads the copy');
  await f.ov.write(rw.result.fh, 0, Buffer.from('LOWER'));
  f.ov.release(rw.result.fh);
  t.equal(fs.readFileSync(path.join(f.upper, 'c'), 'utf8'), `LOWER data\n`);

  // O_TRUNC: no data copied, and the open's truncation gives the new mtime as open(2) does
  const before = Date.now() - 1000;
  const e = walk(f.ov, 'd/e');
  const tr = await counted(() => f.ov.open(ctx, e, O.O_WRONLY | O.O_TRUNC));
  t.equal(tr.calls.openat, 2, 'O_TRUNC: no reopen');
  t.equal(tr.calls.ftruncate, 1, 'the open truncates the copy');
  const up = path.join(f.upper, 'd/e');
  t.equal(fs.statSync(up).size, 0, 'empty');
  t.ok(fs.statSync(up).mtimeMs >= before, 'mtime is the open\'s, not the lower\'s');
  t.ok(fs.statSync(up).ctimeMs >= before, 'ctime too');
  t.equal(fdFlags(tr.result.backingFd as number) & O.O_TRUNC, 0);
  await f.ov.write(tr.result.fh, 0, Buffer.from('new'));
  f.ov.release(tr.result.fh);
  t.equal(fs.readFileSync(up, 'utf8'), 'new');

  // O_SYNC cannot be set on an open fd: that handle is opened anew, with it
  const sn = walk(f.ov, 's');
  const sy = await counted(() => f.ov.open(ctx, sn, O.O_WRONLY | O.O_SYNC));
  t.equal(sy.calls.openat, 3, 'O_SYNC: the upper file opened again');
  t.equal(fdFlags(sy.result.backingFd as number) & O.O_SYNC, O.O_SYNC, 'with O_SYNC');
  f.ov.release(sy.result.fh);
  t.equal(sy.calls.close, 2, 'the source and the copy closed');
  t.equal(fs.readFileSync(path.join(f.upper, 's'), 'utf8'), LOWER);

  // an open that finds the file copied up already opens it as before
  const again = await counted(() => f.ov.open(ctx, c, O.O_WRONLY | O.O_APPEND));
  t.equal(again.calls.openat, 1, 'an upper file: one openat');
  t.not(fdFlags(again.result.backingFd as number) & O.O_APPEND, 0);
  f.ov.release(again.result.fh);
});

t.test('two opens racing for one copy-up: one keeps the copy, the other opens the file', async (t) => {
  const f = await lowerFiles(t);
  const id = walk(f.ov, 'p');
  const { result: [x, y], calls } = await counted(() => Promise.all([
    f.ov.open(ctx, id, O.O_WRONLY | O.O_APPEND),
    f.ov.open(ctx, id, O.O_RDWR),
  ]));
  t.equal(calls.openat, 3, 'source, copy, and the second open\'s own');
  t.not(x.backingFd, y.backingFd, 'two fds');
  t.not(fdFlags(x.backingFd as number) & O.O_APPEND, 0, 'the first appends');
  t.equal(fdFlags(y.backingFd as number) & ACCMODE, O.O_RDWR, 'the second reads and writes');
  await f.ov.write(x.fh, 0, Buffer.from('x'));
  t.equal((await f.ov.read(y.fh, 0, 100)).toString(), `${LOWER}x`, 'both see the one upper file');
  f.ov.release(x.fh);
  f.ov.release(y.fh);
});

t.test('noatime and writeback-cache mounts: the copy gets the flags their opens get', async (t) => {
  const f = await lowerFiles(t, { noatime: true });
  const r = await f.ov.open(ctx, walk(f.ov, 'q'), O.O_WRONLY);
  t.not(fdFlags(r.backingFd as number) & O.O_NOATIME, 0, 'O_NOATIME');
  f.ov.release(r.fh);

  const g = await lowerFiles(t);
  g.ov.init({ passthrough: false, writebackCache: true });
  const gq = walk(g.ov, 'q');
  const w = await counted(() => g.ov.open(ctx, gq, O.O_WRONLY | O.O_APPEND));
  t.equal(w.calls.openat, 2, 'no reopen');
  t.equal(w.calls.setfl, 0, 'no O_APPEND: the kernel positions writes');
  const fl = fdFlags(w.result.backingFd as number);
  t.equal(fl & ACCMODE, O.O_RDWR, 'read-write: the kernel may read pages back');
  t.equal(fl & O.O_APPEND, 0);
  g.ov.release(w.result.fh);

  const p = await lowerFiles(t);
  p.ov.init({ passthrough: true, writebackCache: false });
  const pt = await p.ov.open(ctx, walk(p.ov, 'q'), O.O_WRONLY | O.O_APPEND);
  t.equal(fs.fstatSync(pt.backingFd as number).ino, fs.statSync(path.join(p.upper, 'q')).ino, 'passthrough: the backing fd is the upper file');
  t.equal(pt.keepBacking, false, 'an upper file\'s backing is not kept');
  p.ov.release(pt.fh);
  const direct = await p.ov.open(ctx, walk(p.ov, 'a'), O.O_WRONLY | O.O_DIRECT);
  t.equal(direct.directIo, true, 'O_DIRECT under passthrough: served by the daemon');
  await p.ov.write(direct.fh, 0, Buffer.from('D'));
  p.ov.release(direct.fh);
  t.equal(fs.readFileSync(path.join(p.upper, 'a'), 'utf8'), `D${LOWER.slice(1)}`);
});
