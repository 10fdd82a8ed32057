import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { Overlay } from '../../../src/overlay';
import { config, ctx, fixture, isWhiteoutFile, ls, put, readFile, walk, xattr, R, type Fixture } from './fixtures/helpers';

/**
 * Mounts kernel overlayfs over the fixture's layers (its upper and work dir) with
 * `options`, runs `fn` on the mountpoint and unmounts, whatever `fn` does.
 */
function withKernelOverlay<T>(f: Fixture, options: string, fn: (mnt: string) => T): T {
  const mnt = fs.mkdtempSync(path.join(f.dir, 'mnt-'));
  execFileSync('mount', ['-t', 'overlay', 'overlay', '-o',
    `lowerdir=${f.lowers.join(':')},upperdir=${f.upper},workdir=${f.work},${options}`, mnt]);
  try {
    return fn(mnt);
  } finally {
    execFileSync('umount', [mnt]);
  }
}

/** every file under dir with its content, sorted: what a reader of the merged view sees */
function tree(root: string): string[] {
  const out: string[] = [];
  const walkDir = (rel: string): void => {
    for (const n of fs.readdirSync(path.join(root, rel)).sort()) {
      const r = rel ? `${rel}/${n}` : n;
      const s = fs.lstatSync(path.join(root, r));
      if (s.isDirectory()) {
        out.push(`${r}/`);
        walkDir(r);
      } else {
        out.push(`${r}=${fs.readFileSync(path.join(root, r), 'latin1')}`);
      }
    }
  };
  walkDir('');
  return out;
}

t.test('rename of lower directories writes redirects that kernel overlayfs reads the same', async (t) => {
  const f = await fixture(2, ([l0, l1], upper) => {
    put(l1 as string, 'a/b/deep', 'deep');
    put(l1 as string, 'a/one', '1');
    put(l0 as string, 'a/two', '2');
    put(l1 as string, 'p/q/r', 'r');
    put(l1 as string, 's/t', 't');
    put(l1 as string, 'x/y', 'y');
    put(upper, 'newdir/z', 'z');
  });
  t.teardown(() => f.cleanup());
  const ov = f.ov;
  // same parent: relative redirect
  await ov.rename(ctx, 1, 'a', 1, 'A', R);
  t.equal(xattr(path.join(f.upper, 'A'), 'trusted.overlay.redirect'), 'a');
  t.ok(isWhiteoutFile(path.join(f.upper, 'a')));
  t.same(ls(ov, 'A'), ['b', 'one', 'two'], 'merged contents follow');
  t.equal(await readFile(ov, 'A/b/deep'), 'deep');
  // other parent: absolute redirect
  await ov.rename(ctx, walk(ov, 'p'), 'q', walk(ov, 'newdir'), 'Q', R);
  t.equal(xattr(path.join(f.upper, 'newdir/Q'), 'trusted.overlay.redirect'), '/p/q');
  t.same(ls(ov, 'newdir/Q'), ['r']);
  t.same(ls(ov, 'p'), []);
  // a dir inside a renamed dir, renamed again
  await ov.rename(ctx, walk(ov, 'A'), 'b', 1, 'B', R);
  t.equal(xattr(path.join(f.upper, 'B'), 'trusted.overlay.redirect'), '/a/b');
  t.same(ls(ov, 'B'), ['deep']);
  t.same(ls(ov, 'A'), ['one', 'two']);
  // rename twice in the same parent keeps pointing at the lower
  await ov.rename(ctx, 1, 's', 1, 's1', R);
  await ov.rename(ctx, 1, 's1', 1, 's2', R);
  t.equal(xattr(path.join(f.upper, 's2'), 'trusted.overlay.redirect'), 's');
  t.same(ls(ov, 's2'), ['t']);
  // change a file inside a redirected dir
  const { fh } = await ov.open(ctx, walk(ov, 's2/t'), fs.constants.O_WRONLY | fs.constants.O_TRUNC);
  await ov.write(fh, 0, Buffer.from('T!'));
  ov.release(fh);
  // a pure upper dir moved into a merged parent becomes opaque
  await ov.mkdir(ctx, 1, 'fresh', 0o755);
  await ov.rename(ctx, 1, 'fresh', walk(ov, 'x'), 'y2', R);
  t.equal(xattr(path.join(f.upper, 'x/y2'), 'trusted.overlay.opaque'), 'y');
  const ours = await collect(ov);
  t.ok(ours.includes('s2/t=T!') && ours.includes('A/two=2') && ours.includes('newdir/Q/r=r'));
  t.same(withKernelOverlay(f, 'redirect_dir=on,index=on', tree), ours, 'kernel overlayfs shows the same tree');
});

/** the merged tree as our overlay sees it, in the format of tree() */
async function collect(ov: Overlay): Promise<string[]> {
  const out: string[] = [];
  const walkDir = async (rel: string): Promise<void> => {
    for (const n of ls(ov, rel)) {
      const r = rel ? `${rel}/${n}` : n;
      const a = ov.getattr(ctx, walk(ov, r));
      if ((a.mode & fs.constants.S_IFMT) === fs.constants.S_IFDIR) {
        out.push(`${r}/`);
        await walkDir(r);
      } else {
        out.push(`${r}=${await readFile(ov, r)}`);
      }
    }
  };
  await walkDir('');
  return out;
}

t.test('an upper written by kernel overlayfs reads the same through stratafs', async (t) => {
  const f = await fixture(2, ([l0, l1]) => {
    put(l1 as string, 'a/b/deep', 'deep');
    put(l1 as string, 'a/one', '1');
    put(l0 as string, 'a/two', '2');
    put(l1 as string, 'gone', 'g');
    put(l1 as string, 'p/q/r', 'r');
    put(l1 as string, 'o/old', 'o');
  });
  const opened: { ov?: Overlay } = {};
  t.teardown(() => {
    opened.ov?.destroy();
    fs.rmSync(f.dir, { recursive: true, force: true });
  });
  f.ov.destroy();
  const kernelView = withKernelOverlay(f, 'redirect_dir=on,index=on', (mnt) => {
    execFileSync('sh', ['-e', '-c', [
      'mv a A', 'mv p/q Q', 'rm gone', 'mv A/b A/b2', 'rm -r o', 'mkdir o', 'echo new > o/new',
      'echo more >> A/one', 'setfattr -n trusted.overlay.mine -v 1 A/one',
    ].join('; ')], { cwd: mnt });
    return tree(mnt);
  });
  const ov = await Overlay.open(config(f.lowers, f.upper, f.work));
  opened.ov = ov;
  t.same(await collect(ov), kernelView, 'same tree as the kernel showed');
  t.same(ov.getxattr(ctx, walk(ov, 'A/one'), 'trusted.overlay.mine')?.toString(), '1', 'escaped xattr read back');
  t.notOk(ov.listxattr(ctx, walk(ov, 'A')).some((n) => n.includes('redirect') || n.includes('origin')));
});

t.test('metacopy files written by kernel overlayfs (metacopy=on)', async (t) => {
  const f = await fixture(1, ([l0]) => {
    put(l0 as string, 'big', 'x'.repeat(100000));
    put(l0 as string, 'dir/moved', 'moved data');
  });
  const opened: { ov?: Overlay } = {};
  t.teardown(() => {
    opened.ov?.destroy();
    fs.rmSync(f.dir, { recursive: true, force: true });
  });
  f.ov.destroy();
  withKernelOverlay(f, 'redirect_dir=on,index=on,metacopy=on', (mnt) => {
    execFileSync('sh', ['-e', '-c', 'chmod 600 big; chown 5:6 dir/moved; mv dir/moved m2'], { cwd: mnt });
  });
  t.ok(xattr(path.join(f.upper, 'big'), 'trusted.overlay.metacopy') !== null, 'kernel wrote a metacopy file');
  t.ok(fs.statSync(path.join(f.upper, 'big')).blocks <= 8, 'no data blocks in the upper');
  const ov = await Overlay.open(config(f.lowers, f.upper, f.work));
  opened.ov = ov;
  t.equal(await readFile(ov, 'big'), 'x'.repeat(100000), 'data read from the lower');
  t.equal(ov.getattr(ctx, walk(ov, 'big')).mode & 0o777, 0o600, 'metadata from the upper');
  t.equal(await readFile(ov, 'm2'), 'moved data', 'metacopy with redirect');
  const { fh } = await ov.open(ctx, walk(ov, 'm2'), fs.constants.O_WRONLY);
  await ov.write(fh, 0, Buffer.from('M'));
  ov.release(fh);
  t.equal(fs.readFileSync(path.join(f.upper, 'm2'), 'latin1'), 'Moved data', 'data copied up in place on write');
  t.equal(xattr(path.join(f.upper, 'm2'), 'trusted.overlay.metacopy'), null, 'metacopy mark dropped');
  t.equal(fs.statSync(path.join(f.upper, 'm2')).uid, 5);
});

t.test('an absolute redirect is walked as the kernel walks it: no symlink followed, a non-directory or opaque dir on the way ends it', async (t) => {
  // three shapes, each an upper dir `c` redirected to /a/b over three lowers (l0 on top):
  //   s: l1 holds `a` as a symlink to a host dir that has b/secret; l2 holds a/b/low
  //   o: l0's `a` is opaque; l1 holds a/b/low
  //   m: l1 lacks `a`; l2 holds a/b/more (a missing component skips the layer)
  const f = await fixture(3, ([l0, l1, l2], upper) => {
    const host = path.join(path.dirname(upper), 'host');
    put(host, 'b/secret', 'host');
    for (const s of ['s', 'o', 'm']) put(l0 as string, `${s}/a/b/real`, 'real');
    fs.mkdirSync(path.join(l1 as string, 's'));
    fs.symlinkSync(host, path.join(l1 as string, 's', 'a'));
    put(l2 as string, 's/a/b/low', 'low');
    execFileSync('setfattr', ['-n', 'trusted.overlay.opaque', '-v', 'y', path.join(l0 as string, 'o', 'a')]);
    put(l1 as string, 'o/a/b/low', 'low');
    put(l2 as string, 'm/a/b/more', 'more');
    for (const s of ['s', 'o', 'm']) {
      fs.mkdirSync(path.join(upper, s, 'c'), { recursive: true });
      execFileSync('setfattr', ['-n', 'trusted.overlay.redirect', '-v', `/${s}/a/b`, path.join(upper, s, 'c')]);
    }
  });
  t.teardown(() => f.cleanup());
  const ours = ['s', 'o', 'm'].map((s) => ls(f.ov, `${s}/c`).join(','));
  t.same(ours, ['real', 'real', 'more,real'], 'what stratafs shows in each c');
  const kernel = withKernelOverlay(f, 'redirect_dir=on', (mnt) => ['s', 'o', 'm'].map((s) => fs.readdirSync(path.join(mnt, s, 'c')).sort().join(',')));
  t.same(kernel, ours, 'kernel overlayfs shows the same');
});
