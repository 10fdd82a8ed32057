// Real fds behind open files (src/overlay/handle-fds.ts): read-only opens of one file
// share one fd, writable opens get their own, the budget refuses with ENFILE past a
// mount's share of the pool and leaves the other mounts theirs, and released fds go
// back (counted in /proc/self/fd).
import t from 'tap';
import { constants as fsc, readdirSync } from 'node:fs';
import { E } from '../../../src/errors';
import { FdBudget, setFdBudget } from '../../../src/overlay/handle-fds';
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
