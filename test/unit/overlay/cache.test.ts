import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { ctx, fixture, ls, put, readFile, walk, writeFile, R } from './fixtures/helpers';

const O = fs.constants;

// Layers must not change behind a mount; the tests change them anyway, to see what the
// overlay remembers: a change made behind it stays unseen until stratafs itself changes
// something that makes it read again.

t.test('lower listings and attributes are read once', async (t) => {
  const f = await fixture(1, ([l0]) => {
    put(l0 as string, 'd/a', 'a');
    put(l0 as string, 'd/b', 'b');
  });
  t.teardown(() => f.cleanup());
  const l0 = f.lowers[0] as string;
  t.same(ls(f.ov, 'd'), ['a', 'b']);
  put(l0, 'd/behind', 'x');
  t.same(ls(f.ov, 'd'), ['a', 'b'], 'listing of the lower dir is the cached one');
  t.equal(f.ov.lookup(ctx, walk(f.ov, 'd'), 'behind'), null, 'a name the cached listing lacks is not looked for');
  const a = walk(f.ov, 'd/a');
  const mode = f.ov.getattr(ctx, a).mode;
  fs.chmodSync(path.join(l0, 'd/a'), 0o600);
  t.equal(f.ov.getattr(ctx, a).mode, mode, 'lower attributes are the cached ones');
  t.not(mode & 0o7777, 0o600);
  t.ok(f.ov.cacheSizes.listings >= 1);
  t.ok(f.ov.cacheSizes.stats >= 1);
});

t.test('an upper listing is read again after each change through the mount', async (t) => {
  const f = await fixture(1, ([l0], upper) => {
    put(l0 as string, 'm/low', 'l');
    put(upper, 'm/up', 'u');
    put(upper, 'u/x', 'x');
    put(upper, 'v/y', 'y');
  });
  t.teardown(() => f.cleanup());
  t.same(ls(f.ov, 'm'), ['low', 'up']);
  put(f.upper, 'm/behind', 'b');
  t.same(ls(f.ov, 'm'), ['low', 'up'], 'upper listing is the cached one while nothing changed');
  const m = walk(f.ov, 'm');
  const c = await f.ov.create(ctx, m, 'new', 0o644, O.O_RDWR);
  f.ov.release(c.open.fh);
  t.same(ls(f.ov, 'm'), ['behind', 'low', 'new', 'up'], 'create');
  await f.ov.unlink(ctx, m, 'low');
  t.same(ls(f.ov, 'm'), ['behind', 'new', 'up'], 'unlink of a lower name (whiteout)');
  await f.ov.mkdir(ctx, m, 'sub', 0o755);
  t.same(ls(f.ov, 'm'), ['behind', 'new', 'sub', 'up'], 'mkdir');
  await f.ov.rmdir(ctx, m, 'sub');
  t.same(ls(f.ov, 'm'), ['behind', 'new', 'up'], 'rmdir');
  await f.ov.symlink(ctx, m, 'sl', 'up');
  await f.ov.mknod(ctx, m, 'fifo', O.S_IFIFO | 0o644, 0, 0);
  await f.ov.link(ctx, walk(f.ov, 'm/up'), m, 'hard');
  t.same(ls(f.ov, 'm'), ['behind', 'fifo', 'hard', 'new', 'sl', 'up'], 'symlink, mknod, link');
  // rename between two cached upper dirs
  t.same(ls(f.ov, 'u'), ['x']);
  t.same(ls(f.ov, 'v'), ['y']);
  await f.ov.rename(ctx, walk(f.ov, 'u'), 'x', walk(f.ov, 'v'), 'x2', R);
  t.same(ls(f.ov, 'u'), [], 'rename: source dir');
  t.same(ls(f.ov, 'v'), ['x2', 'y'], 'rename: target dir');
  await f.ov.rename(ctx, walk(f.ov, 'v'), 'y', walk(f.ov, 'u'), 'y', { ...R, exchange: false });
  t.same(ls(f.ov, 'u'), ['y']);
  t.same(ls(f.ov, 'v'), ['x2']);
});

t.test('copy-up shows in listings and attributes', async (t) => {
  const f = await fixture(1, ([l0]) => {
    put(l0 as string, 'd/e/f', 'lower');
    put(l0 as string, 'g', 'g');
  });
  t.teardown(() => f.cleanup());
  t.same(ls(f.ov, ''), ['d', 'g']);
  t.same(ls(f.ov, 'd'), ['e']);
  t.same(ls(f.ov, 'd/e'), ['f']);
  const file = walk(f.ov, 'd/e/f');
  t.equal(f.ov.getattr(ctx, file).size, 5);
  // copy-up of the file (and of d, d/e) through an open for writing
  await writeFile(f.ov, 'd/e/f', 'longer data', O.O_WRONLY);
  t.equal(f.ov.getattr(ctx, file).size, 11, 'copy-up then stat: the upper size');
  t.equal(await readFile(f.ov, 'd/e/f'), 'longer data');
  // the upper dirs now exist; one file put behind the mount shows once we changed the upper
  put(f.upper, 'd/e/behind', 'b');
  const e = walk(f.ov, 'd/e');
  t.same(ls(f.ov, 'd/e'), ['behind', 'f'], 'the new upper dir is listed (not a stale "no upper")');
  await f.ov.unlink(ctx, e, 'behind');
  t.same(ls(f.ov, 'd/e'), ['f']);
  // chmod then getattr (copy-up of a lower file by setattr)
  const g = walk(f.ov, 'g');
  t.not(f.ov.getattr(ctx, g).mode & 0o7777, 0o600);
  await f.ov.setattr(ctx, g, { mode: 0o600 });
  t.equal(f.ov.getattr(ctx, g).mode & 0o7777, 0o600, 'chmod then getattr');
  await f.ov.setattr(ctx, g, { size: 0 });
  t.equal(f.ov.getattr(ctx, g).size, 0, 'truncate then getattr');
});

t.test('merged lookups answered from cached listings find names of every layer', async (t) => {
  const f = await fixture(3, ([l0, l1, l2]) => {
    put(l0 as string, 'm/top', '0');
    put(l1 as string, 'm/mid', '11');
    put(l2 as string, 'm/bottom', '222');
    put(l2 as string, 'm/top', 'hidden');
    put(l1 as string, 'm/.wh.gone', '');
    put(l2 as string, 'm/gone', 'g');
    put(l2 as string, 'm/sub/deep', 'd');
  });
  t.teardown(() => f.cleanup());
  t.same(ls(f.ov, 'm'), ['bottom', 'mid', 'sub', 'top']);
  t.equal(await readFile(f.ov, 'm/bottom'), '222');
  t.equal(await readFile(f.ov, 'm/mid'), '11');
  t.equal(await readFile(f.ov, 'm/top'), '0');
  t.equal(f.ov.lookup(ctx, walk(f.ov, 'm'), 'gone'), null, 'AUFS whiteout still hides');
  t.same(ls(f.ov, 'm/sub'), ['deep']);
  t.equal(await readFile(f.ov, 'm/sub/deep'), 'd');
});

t.test('a directory larger than the byte bound still lists whole, every time', async (t) => {
  const names = Array.from({ length: 600 }, (_, i) => `file-with-a-long-name-${i.toString().padStart(4, '0')}`);
  const f = await fixture(1, ([l0], upper) => {
    for (const n of names) put(l0 as string, `big/${n}`, '');
    put(upper, 'big/upper-one', '');
    put(l0 as string, 'small/s', '');
  }, false, { caches: { listingBytes: 8192, statBytes: 4096 } });
  t.teardown(() => f.cleanup());
  const want = [...names, 'upper-one'].sort();
  t.same(ls(f.ov, 'big'), want);
  t.same(ls(f.ov, 'big'), want, 'listed again');
  t.same(ls(f.ov, 'small'), ['s']);
  const sizes = f.ov.cacheSizes;
  t.ok(sizes.listingBytes <= 8192, `listing bytes within the bound (${sizes.listingBytes})`);
  t.ok(sizes.statBytes <= 4096, `stat bytes within the bound (${sizes.statBytes})`);
  const big = walk(f.ov, 'big');
  await f.ov.unlink(ctx, big, names[0] as string);
  t.same(ls(f.ov, 'big'), want.filter((n) => n !== names[0]));
  // every name still resolves though most attributes were evicted
  for (const n of names.slice(1, 50)) t.equal(f.ov.getattr(ctx, walk(f.ov, `big/${n}`)).size, 0);
});

t.test('xattrs are listed once per node, and changes through the mount show', async (t) => {
  const f = await fixture(1, ([l0]) => {
    put(l0 as string, 'some', 's');
    execFileSync('setfattr', ['-n', 'user.a', '-v', '1', path.join(l0 as string, 'some')]);
  });
  t.teardown(() => f.cleanup());
  const some = walk(f.ov, 'some');
  t.equal(f.ov.getxattr(ctx, some, 'security.selinux'), null, 'a name not listed');
  t.equal(f.ov.getxattr(ctx, some, 'user.a')?.toString(), '1');
  await f.ov.setxattr(ctx, some, 'user.b', Buffer.from('2'), 0);
  t.equal(f.ov.getxattr(ctx, some, 'user.b')?.toString(), '2', 'set after listing');
  await f.ov.removexattr(ctx, some, 'user.a');
  t.equal(f.ov.getxattr(ctx, some, 'user.a'), null, 'removed after listing');
  t.same(f.ov.listxattr(ctx, some).sort(), ['user.b']);
});

t.test('closing the mount drops its nodes and cache entries', async (t) => {
  const f = await fixture(2, ([l0, l1]) => {
    for (let i = 0; i < 6; i++) {
      put(l0 as string, `d${i}/a${i}`, 'x');
      put(l1 as string, `d${i}/b${i}`, 'yy');
    }
  }, false, { caches: { listings: 4, stats: 4 } });
  t.teardown(() => fs.rmSync(f.dir, { recursive: true, force: true })); // destroyed below, once
  for (let i = 0; i < 6; i++) {
    t.same(ls(f.ov, `d${i}`), [`a${i}`, `b${i}`]);
    walk(f.ov, `d${i}/a${i}`);
  }
  const before = f.ov.cacheSizes;
  t.ok(before.listings > 0 && before.listings <= 4, `listings within the bound while mounted (${before.listings})`);
  t.ok(before.stats > 0 && before.stats <= 4, `stats within the bound while mounted (${before.stats})`);
  t.ok(f.ov.nodeCount > 6, `the walk made nodes (${f.ov.nodeCount})`);
  f.ov.destroy();
  t.same(f.ov.cacheSizes, { listings: 0, listingBytes: 0, stats: 0, statBytes: 0 }, 'no cache entry after the close');
  t.equal(f.ov.nodeCount, 1, 'only the root node after the close');
});

t.test('the count bounds hold and evicted entries are read again', async (t) => {
  const f = await fixture(2, ([l0, l1]) => {
    for (let i = 0; i < 6; i++) {
      put(l0 as string, `d${i}/a${i}`, 'x');
      put(l1 as string, `d${i}/b${i}`, 'yy');
    }
  }, false, { caches: { listings: 2, stats: 3 } });
  t.teardown(() => f.cleanup());
  for (let round = 0; round < 2; round++) {
    for (let i = 0; i < 6; i++) {
      t.same(ls(f.ov, `d${i}`), [`a${i}`, `b${i}`]);
      t.equal(f.ov.getattr(ctx, walk(f.ov, `d${i}/b${i}`)).size, 2);
    }
  }
  const sizes = f.ov.cacheSizes;
  t.ok(sizes.listings <= 2, `listings within the count bound (${sizes.listings})`);
  t.ok(sizes.stats <= 3, `stats within the count bound (${sizes.stats})`);
  t.ok(sizes.listings > 0 && sizes.stats > 0);
});
