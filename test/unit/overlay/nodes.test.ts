import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { constants } from 'node:os';
import { ctx, fixture, put, readFile, walk, withErrno, R, look, workLeftovers } from './fixtures/helpers';

const O = fs.constants;
const E = constants.errno;

t.test('failing rename, unlink and rmdir leave no nodes behind', async (t) => {
  const f = await fixture(1, ([l0], upper) => {
    put(l0 as string, 'd/file', 'f');
    put(l0 as string, 'd/dir/inner', 'i');
    put(l0 as string, 'd/full/x', 'x');
    put(l0 as string, 'd/empty/.keep');
    fs.unlinkSync(path.join(l0 as string, 'd/empty/.keep'));
    put(upper, 'd/ufile', 'u');
    fs.mkdirSync(path.join(upper, 'd/udir'));
    put(upper, 'd/udir/y', 'y');
  });
  t.teardown(() => f.cleanup());
  const start = f.ov.nodeCount;
  const d = walk(f.ov, 'd');
  const failing: [string, () => Promise<void>, number][] = [
    ['rename file over dir', () => f.ov.rename(ctx, d, 'file', d, 'dir', R), E.EISDIR],
    ['rename dir over file', () => f.ov.rename(ctx, d, 'dir', d, 'file', R), E.ENOTDIR],
    ['rename dir over full dir', () => f.ov.rename(ctx, d, 'empty', d, 'full', R), E.ENOTEMPTY],
    ['rename noreplace', () => f.ov.rename(ctx, d, 'file', d, 'ufile', { ...R, noReplace: true }), E.EEXIST],
    ['rename missing source', () => f.ov.rename(ctx, d, 'nope', d, 'file', R), E.ENOENT],
    ['exchange with missing', () => f.ov.rename(ctx, d, 'file', d, 'nope', { ...R, exchange: true }), E.ENOENT],
    ['unlink dir', () => f.ov.unlink(ctx, d, 'dir'), E.EISDIR],
    ['rmdir file', () => f.ov.rmdir(ctx, d, 'file'), E.ENOTDIR],
    ['rmdir full', () => f.ov.rmdir(ctx, d, 'full'), E.ENOTEMPTY],
    ['rmdir full upper', () => f.ov.rmdir(ctx, d, 'udir'), E.ENOTEMPTY],
  ];
  for (const [what, op, errno] of failing) {
    await t.rejects(Promise.resolve().then(op), withErrno(errno), what);
  }
  t.equal(f.ov.nodeCount, start + 1, 'only the looked-up parent is in the table');
  f.ov.forget(d, 1);
  t.equal(f.ov.nodeCount, start, 'and it goes when the kernel forgets it');
});

t.test('successful rename and unlink of names the kernel never looked up leave no nodes', async (t) => {
  const f = await fixture(1, ([l0]) => {
    put(l0 as string, 'd/a', 'a');
    put(l0 as string, 'd/b', 'b');
    put(l0 as string, 'd/c', 'c');
  });
  t.teardown(() => f.cleanup());
  const start = f.ov.nodeCount;
  const d = walk(f.ov, 'd');
  await f.ov.rename(ctx, d, 'a', d, 'b', R);
  await f.ov.unlink(ctx, d, 'c');
  f.ov.forget(d, 1);
  t.equal(f.ov.nodeCount, start);
  t.equal(await readFile(f.ov, 'd/b'), 'a');
});

t.test('rename over a file waits for the copy-up running on it', async (t) => {
  const f = await fixture(1, ([l0]) => {
    fs.writeFileSync(path.join(l0 as string, 'big'), Buffer.alloc(32 << 20, 1));
    fs.writeFileSync(path.join(l0 as string, 'src'), 'new');
  });
  t.teardown(() => f.cleanup());
  const big = walk(f.ov, 'big');
  walk(f.ov, 'src');
  const opening = f.ov.open(ctx, big, O.O_RDWR);
  const renaming = f.ov.rename(ctx, 1, 'src', 1, 'big', R);
  const [o] = await Promise.all([opening, renaming]);
  // the handle is on the copy the rename replaced
  t.equal((await f.ov.read(o.fh, 0, 2)).toString('latin1'), '\x01\x01');
  f.ov.release(o.fh);
  t.equal(await readFile(f.ov, 'big'), 'new');
  t.equal(fs.readFileSync(path.join(f.upper, 'big'), 'latin1'), 'new');
  t.same(workLeftovers(f.work), [], 'nothing left in the work dir');
});

t.test('a removed directory is never taken for the layer root', async (t) => {
  const f = await fixture(1, ([l0], upper) => {
    put(upper, 'x', 'root x');
    fs.mkdirSync(path.join(upper, 'gone'));
    put(l0 as string, 'lowgone/.keep');
    fs.unlinkSync(path.join(l0 as string, 'lowgone/.keep'));
  });
  t.teardown(() => f.cleanup());
  for (const name of ['gone', 'lowgone']) {
    const d = walk(f.ov, name);
    const { fh } = f.ov.opendir(ctx, d);
    await f.ov.rmdir(ctx, 1, name);
    t.throws(() => look(f.ov, d, 'x'), withErrno(E.ENOENT), `${name}: lookup in it`);
    // nothing of the layer root, nor of its lowers: only '.' and '..' (kernel overlayfs
    // lists nothing for an open directory renamed over; after rmdir the kernel answers
    // ENOENT itself)
    t.same(f.ov.readdir(fh, 0).map((e) => e.name), ['.', '..'], `${name}: listing it shows nothing`);
    await t.rejects(Promise.resolve().then(() => f.ov.mkdir(ctx, d, 'new', 0o755)), withErrno(E.ENOENT), `${name}: mkdir in it`);
    await t.rejects(Promise.resolve().then(() => f.ov.create(ctx, d, 'x', 0o644, O.O_RDWR)), withErrno(E.ENOENT), `${name}: create in it`);
    f.ov.releasedir(fh);
  }
  t.equal(fs.readFileSync(path.join(f.upper, 'x'), 'latin1'), 'root x');
  t.same(fs.readdirSync(f.upper).sort(), ['gone', 'lowgone', 'x'].filter((n) => n !== 'gone'));
});
