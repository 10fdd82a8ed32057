// Real fds behind open files (src/overlay/handle-fds.ts): read-only opens of one file
// share one fd, writable opens get their own, the budget refuses with ENFILE past a
// mount's share of the pool and leaves the other mounts theirs, and released fds go
// back (counted in /proc/self/fd).
import t from 'tap';
import { constants as fsc, readdirSync } from 'node:fs';
import { E } from '../../../src/errors';
import { FdBudget, setFdBudget } from '../../../src/overlay/handle-fds';
import { native } from '../../../src/native';
import { ctx, fixture, put, walk, withErrno } from './fixtures/helpers';

const openFds = (): number => readdirSync('/proc/self/fd').length;

t.test('FdBudget: half of what the others left, never below a floor', async (t) => {
  const b = new FdBudget(100);
  const a = {};
  const other = {};
  t.equal(b.allowance(a), 50, 'alone: half the pool');
  for (let i = 0; i < 50; i++) b.take(a);
  t.throws(() => b.take(a), withErrno(E.ENFILE), 'ENFILE past the allowance');
  t.equal(b.allowance(other), 25, 'another mount: half of what is left');
  for (let i = 0; i < 25; i++) b.take(other);
  t.throws(() => b.take(other), withErrno(E.ENFILE));
  t.equal(b.allowance({}), 16, 'a third: at least the floor');
  b.give(a);
  t.equal(b.heldBy(a), 49, 'given back');
  t.throws(() => b.take(a), withErrno(E.ENFILE), 'with the other mount holding 25, the first keeps 49 but gets no more (allowance 37)');
  b.give({});
  t.equal(b.heldBy(a), 49, 'giving back what an owner does not hold changes nothing');
});

t.test('read-only opens share one fd, writable ones do not, all go back', async (t) => {
  const f = await fixture(1, ([l0]) => put(l0 as string, 'd/file', 'lower data'));
  t.teardown(() => f.cleanup());
  const d = walk(f.ov, 'd');
  const file = f.ov.lookup(ctx, d, 'file');
  if (file === null) throw new Error('lower file not found');
  const before = openFds();
  const readers = [];
  for (let i = 0; i < 200; i++) readers.push(await f.ov.open(ctx, file.nodeId, fsc.O_RDONLY));
  t.ok(openFds() - before <= 2, `200 read-only opens: ${openFds() - before} more fds (the file, maybe its directory)`);
  t.equal((await f.ov.read(readers[199]!.fh, 0, 64)).toString(), 'lower data', 'each reads');
  for (const r of readers.slice(0, 199)) f.ov.release(r.fh);
  t.equal((await f.ov.read(readers[199]!.fh, 0, 5)).toString(), 'lower', 'the last one still reads after the others are released');

  const w1 = await f.ov.open(ctx, file.nodeId, fsc.O_RDWR);
  const w2 = await f.ov.open(ctx, file.nodeId, fsc.O_RDWR);
  t.not(w1.backingFd, w2.backingFd, 'writable opens have their own fds');
  const upperReader = await f.ov.open(ctx, file.nodeId, fsc.O_RDONLY);
  t.not(upperReader.backingFd, readers[199]!.backingFd, 'after copy-up a new reader gets the upper copy, not the shared lower fd');
  await f.ov.write(w1.fh, 0, Buffer.from('UPPER'));
  t.equal((await f.ov.read(upperReader.fh, 0, 10)).toString(), 'UPPER data', 'and sees the upper data');
  t.equal((await f.ov.read(readers[199]!.fh, 0, 10)).toString(), 'lower data', 'the old reader keeps the lower copy');
  for (const h of [readers[199]!, w1, w2, upperReader]) f.ov.release(h.fh);
  // what stays is the directory-fd cache's (the upper copy of d/ made by the copy-up)
  t.ok(openFds() - before <= 2, `every file fd closed (${openFds() - before} directory fds more than before)`);
});

t.test('a mount at its budget gets ENFILE, frees it on release', async (t) => {
  setFdBudget(new FdBudget(64)); // allowance 32 for a mount alone
  t.teardown(() => setFdBudget(undefined));
  const f = await fixture(1, ([l0]) => {
    for (let i = 0; i < 40; i++) put(l0 as string, `d/f${i}`, `file ${i}`);
  });
  t.teardown(() => f.cleanup());
  const d = walk(f.ov, 'd');
  const held = [];
  let refused = 0;
  for (let i = 0; i < 40; i++) {
    const e = f.ov.lookup(ctx, d, `f${i}`);
    if (e === null) throw new Error('missing');
    try {
      held.push(await f.ov.open(ctx, e.nodeId, fsc.O_RDONLY));
    } catch (err) {
      t.equal((err as { errno?: number }).errno, E.ENFILE, 'ENFILE');
      refused++;
    }
  }
  t.equal(held.length, 32, 'the allowance of a mount alone');
  t.equal(refused, 8);
  await t.rejects(f.ov.create(ctx, d, 'new', fsc.S_IFREG | 0o644, fsc.O_WRONLY), withErrno(E.ENFILE), 'a create too');
  f.ov.release(held.pop()!.fh);
  const e = f.ov.lookup(ctx, d, 'f39');
  const again = await f.ov.open(ctx, e!.nodeId, fsc.O_RDONLY);
  t.ok(again.fh > 0, 'one released: one more open');
  for (const h of [...held, again]) f.ov.release(h.fh);
});

t.test('a lower file\'s fd is kept after the last release: the next open makes no openat; dropped at forget, copy-up and unmount', async (t) => {
  const f = await fixture(1, ([l0]) => {
    put(l0 as string, 'd/file', 'lower data');
    put(l0 as string, 'd/gone', 'soon forgotten');
  });
  let closed = false;
  t.teardown(() => {
    if (!closed) f.cleanup();
  });
  const d = walk(f.ov, 'd');
  const file = f.ov.lookup(ctx, d, 'file');
  const gone = f.ov.lookup(ctx, d, 'gone');
  if (file === null || gone === null) throw new Error('lower files not found');
  const realOpenat = native.openat;
  let openats = 0;
  native.openat = (...a: Parameters<typeof realOpenat>) => {
    openats++;
    return realOpenat(...a);
  };
  t.teardown(() => {
    native.openat = realOpenat;
  });
  const before = openFds();
  const r1 = await f.ov.open(ctx, file.nodeId, fsc.O_RDONLY);
  f.ov.release(r1.fh);
  const opened = openats;
  t.ok(opened >= 1, 'the first open opens the file');
  t.equal(openFds() - before, 1, 'its fd stays open after the release');
  const r2 = await f.ov.open(ctx, file.nodeId, fsc.O_RDONLY);
  t.equal(openats, opened, 'the next open makes no openat (failed before: one more)');
  t.equal(r2.backingFd, r1.backingFd, 'it gets the kept fd');
  t.equal((await f.ov.read(r2.fh, 0, 64)).toString(), 'lower data', 'which reads the file');
  f.ov.release(r2.fh);

  const g = await f.ov.open(ctx, gone.nodeId, fsc.O_RDONLY);
  f.ov.release(g.fh);
  t.equal(openFds() - before, 2, 'two kept');
  f.ov.forget(gone.nodeId, 1);
  t.equal(openFds() - before, 1, 'the forgotten node\'s fd is closed');

  const w = await f.ov.open(ctx, file.nodeId, fsc.O_WRONLY);
  await f.ov.write(w.fh, 0, Buffer.from('UPPER'));
  f.ov.release(w.fh);
  const r3 = await f.ov.open(ctx, file.nodeId, fsc.O_RDONLY);
  t.equal((await f.ov.read(r3.fh, 0, 64)).toString(), 'UPPER data', 'after copy-up a read-only open reads the upper copy');
  f.ov.release(r3.fh);
  // the directory-fd cache holds the upper copy of d/ now; no file fd is left open
  t.ok(openFds() - before <= 1, `the kept lower fd was closed at copy-up, the upper one is not kept (${openFds() - before} more fds)`);

  const r4 = await f.ov.open(ctx, (f.ov.lookup(ctx, d, 'file') as { nodeId: number }).nodeId, fsc.O_RDONLY);
  f.ov.release(r4.fh);
  const base = readdirSync('/proc/self/fd').length;
  f.cleanup();
  closed = true;
  t.ok(readdirSync('/proc/self/fd').length < base, 'unmount closes what was left');
});

t.test('kept fds give way: at most keptMax, and first given back when the budget is used up', async (t) => {
  setFdBudget(new FdBudget(64)); // allowance 32 for a mount alone; at most 8 kept
  t.teardown(() => setFdBudget(undefined));
  const f = await fixture(1, ([l0]) => {
    for (let i = 0; i < 40; i++) put(l0 as string, `d/f${i}`, `file ${i}`);
  });
  t.teardown(() => f.cleanup());
  const d = walk(f.ov, 'd');
  const ids = Array.from({ length: 40 }, (_, i) => (f.ov.lookup(ctx, d, `f${i}`) as { nodeId: number }).nodeId);
  const before = openFds();
  for (let i = 0; i < 20; i++) {
    const r = await f.ov.open(ctx, ids[i]!, fsc.O_RDONLY);
    f.ov.release(r.fh);
  }
  t.equal(openFds() - before, 8, 'a quarter of the allowance kept');
  const held = [];
  // 32 files that are not kept (the kept are f12..f19, the last 8 released)
  for (const i of [...Array(12).keys(), ...Array.from({ length: 20 }, (_, k) => k + 20)]) {
    held.push(await f.ov.open(ctx, ids[i]!, fsc.O_RDONLY));
  }
  t.equal(held.length, 32, 'the whole allowance is still there for open files: the kept fds were given back');
  t.equal(openFds() - before, 32, 'none kept any more');
  for (const h of held) f.ov.release(h.fh);
});
