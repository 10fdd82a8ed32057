import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { constants } from 'node:os';
import { Overlay } from '../../../src/overlay';
import { StratafsError } from '../../../src/errors';
import { config, ctx, fixture, put, readFile, tmp, walk, withErrno, R } from './fixtures/helpers';

const O = fs.constants;
const E = constants.errno;

t.test('read-only mount: every change is EROFS', async (t) => {
  const f = await fixture(2, ([l0, l1]) => {
    put(l0 as string, 'f', 'top');
    put(l1 as string, 'd/g', 'g');
  }, true);
  t.teardown(() => f.cleanup());
  const ov = f.ov;
  t.equal(await readFile(ov, 'f'), 'top');
  const fid = walk(ov, 'f');
  const checks: Array<[string, () => unknown]> = [
    ['open for write', () => ov.open(ctx, fid, O.O_WRONLY)],
    ['open O_TRUNC', () => ov.open(ctx, fid, O.O_RDONLY | O.O_TRUNC)],
    ['create', () => ov.create(ctx, 1, 'n', 0o644, O.O_WRONLY)],
    ['mkdir', () => ov.mkdir(ctx, 1, 'n', 0o755)],
    ['mknod', () => ov.mknod(ctx, 1, 'n', O.S_IFIFO | 0o644, 0, 0)],
    ['symlink', () => ov.symlink(ctx, 1, 'n', 'x')],
    ['link', () => ov.link(ctx, fid, 1, 'n')],
    ['unlink', () => ov.unlink(ctx, 1, 'f')],
    ['rmdir', () => ov.rmdir(ctx, 1, 'd')],
    ['rename', () => ov.rename(ctx, 1, 'f', 1, 'g', R)],
    ['chmod', () => ov.setattr(ctx, fid, { mode: 0o600 })],
    ['utimens', () => ov.setattr(ctx, fid, { mtime: 'now' })],
    ['setxattr', () => ov.setxattr(ctx, fid, 'user.x', Buffer.from('1'), 0)],
    ['removexattr', () => ov.removexattr(ctx, fid, 'user.x')],
    ['access W_OK', () => ov.access(ctx, fid, O.W_OK)],
  ];
  for (const [what, op] of checks) {
    await t.rejects(Promise.resolve().then(op), withErrno(E.EROFS), what);
  }
  ov.access(ctx, fid, O.R_OK);
  t.ok(ov.statfs(ctx, 1).blocks > 0);
  t.same(fs.readdirSync(f.lowers[0] as string).sort(), ['f']);
});

t.test('Overlay.open validates the configuration', async (t) => {
  const dir = tmp();
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const low = path.join(dir, 'low');
  const up = path.join(dir, 'up');
  const wk = path.join(dir, 'wk');
  for (const d of [low, up, wk]) fs.mkdirSync(d);
  fs.writeFileSync(path.join(dir, 'file'), '');
  const bad = async (c: ReturnType<typeof config>, code: string, re: RegExp, what: string): Promise<void> => {
    try {
      const ov = await Overlay.open(c);
      ov.destroy();
      t.fail(`${what}: accepted`);
    } catch (e) {
      t.ok(e instanceof StratafsError, `${what}: StratafsError`);
      t.equal((e as StratafsError).code, code, `${what}: code`);
      t.match((e as Error).message, re, `${what}: message`);
      t.notOk((e as Error).message.includes('\n'), `${what}: one line`);
    }
  };
  await bad(config([path.join(dir, 'missing')]), 'STRATAFS_ERR_LAYER', /missing: lowerdir does not exist/, 'missing lower');
  await bad(config([path.join(dir, 'file')]), 'STRATAFS_ERR_LAYER', /file: lowerdir is not a directory/, 'file as lower');
  await bad(config([low], up), 'STRATAFS_ERR_OPTION', /workdir is required/, 'no workdir');
  await bad(config([low], up, path.join(dir, 'nowork')), 'STRATAFS_ERR_LAYER', /nowork: workdir does not exist/, 'missing workdir');
  await bad(config([low], path.join(dir, 'noup'), wk), 'STRATAFS_ERR_LAYER', /noup: upperdir does not exist/, 'missing upper');
  fs.mkdirSync(path.join(up, 'w'));
  await bad(config([low], up, path.join(up, 'w')), 'STRATAFS_ERR_LAYER', /inside the upperdir/, 'workdir in upper');
  await bad(config([low], up, up), 'STRATAFS_ERR_LAYER', /inside the upperdir/, 'workdir = upper');
  // different filesystem: a tmpfs under the dir
  const shm = fs.mkdtempSync('/dev/shm/stratafs-');
  t.teardown(() => fs.rmSync(shm, { recursive: true, force: true }));
  await bad(config([low], up, shm), 'STRATAFS_ERR_LAYER', /same filesystem/, 'workdir on another fs');
  // no xattr support: ramfs has none
  const mnt = path.join(dir, 'ramfs');
  fs.mkdirSync(mnt);
  execFileSync('mount', ['-t', 'ramfs', 'ramfs', mnt]);
  try {
    fs.mkdirSync(path.join(mnt, 'u'));
    fs.mkdirSync(path.join(mnt, 'w'));
    await bad(config([low], path.join(mnt, 'u'), path.join(mnt, 'w')), 'STRATAFS_ERR_XATTR', /xattr/, 'upper without xattrs');
  } finally {
    execFileSync('umount', [mnt]);
  }

  // a good one: work/work is created and emptied of leftovers
  fs.mkdirSync(path.join(wk, 'work', 'stale', 'deeper'), { recursive: true });
  fs.writeFileSync(path.join(wk, 'work', 'junk'), 'x');
  const ov = await Overlay.open(config([low], up, wk));
  t.same(fs.readdirSync(path.join(wk, 'work')), [], 'leftovers removed');
  t.equal(process.umask(), 0, 'umask 0');
  ov.destroy();
});

t.test('destroy() twice closes the layer fds once: fds reused in between stay open', async (t) => {
  const openFds = (): Set<number> => new Set(fs.readdirSync('/proc/self/fd').map(Number));
  const before = openFds();
  const f = await fixture(2, (lowers, upper) => {
    put(lowers[0] as string, 'a', 'x');
    put(upper, 'b', 'y');
  });
  t.teardown(() => fs.rmSync(f.dir, { recursive: true, force: true }));
  const mine = [...openFds()].filter((fd) => !before.has(fd));
  t.ok(mine.length >= 3, `the overlay holds its layers open (${mine.join(' ')})`);
  f.ov.destroy();
  // take the freed numbers back, as any later open in the process would
  const reused: number[] = [];
  const extra: number[] = [];
  while (reused.length < mine.length && extra.length < 1000) {
    const fd = fs.openSync('/dev/null', 'r');
    (mine.includes(fd) ? reused : extra).push(fd);
  }
  t.teardown(() => {
    for (const fd of [...reused, ...extra]) fs.close(fd, () => undefined);
  });
  const byNumber = (a: number, b: number): number => a - b;
  t.same([...reused].sort(byNumber), [...mine].sort(byNumber), 'the overlay\'s fd numbers are in use again');
  f.ov.destroy();
  const isNull = (fd: number): boolean => {
    try {
      return fs.fstatSync(fd).isCharacterDevice();
    } catch {
      return false;
    }
  };
  for (const fd of reused) t.ok(isNull(fd), `fd ${fd} still open on /dev/null`);
});
