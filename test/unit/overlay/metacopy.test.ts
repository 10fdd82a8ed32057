import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { ctx, fixture, readFile, walk, writeFile, xattr } from './fixtures/helpers';

const O = fs.constants;
const BIG = 1 << 20;

function lowerFile(l0: string): void {
  const p = path.join(l0, 'd/big');
  fs.mkdirSync(path.dirname(p));
  fs.writeFileSync(p, Buffer.alloc(BIG, 'a'));
  fs.writeFileSync(path.join(l0, 'd/empty'), '');
  fs.writeFileSync(path.join(l0, 'd/small'), 'small data');
  execFileSync('setfattr', ['-n', 'user.k', '-v', 'v', p]);
  execFileSync('touch', ['-h', '-d', '2001-02-03 04:05:06.123456789', p]);
}

const hasMark = (p: string): boolean => xattr(p, 'trusted.overlay.metacopy') !== null;

t.test('metacopy=on: chmod, chown, utimens and xattrs copy up metadata only', async (t) => {
  const f = await fixture(1, ([l0]) => lowerFile(l0 as string), false, { metacopy: true });
  t.teardown(() => f.cleanup());
  const up = path.join(f.upper, 'd/big');
  const big = walk(f.ov, 'd/big');
  const attr = await f.ov.setattr(ctx, big, { mode: 0o600 });
  t.equal(attr.mode & 0o7777, 0o600);
  t.equal(attr.size, BIG, 'size shown is the real one');
  const st = fs.statSync(up);
  t.ok(hasMark(up), 'upper file carries the metacopy mark');
  t.equal(xattr(up, 'trusted.overlay.metacopy'), '', 'empty value, as the kernel writes it');
  t.equal(st.size, BIG, 'upper file has the lower size');
  // (an xattr block may count in st_blocks, the data would take 2048)
  t.ok(st.blocks * 512 < BIG / 4, 'and no data blocks');
  t.equal(st.mode & 0o7777, 0o600);
  t.equal(xattr(up, 'user.k'), 'v', 'xattrs copied');
  t.equal(st.mtime.toISOString(), '2001-02-03T04:05:06.123Z', 'times kept');
  t.equal(f.ov.getattr(ctx, big).blocks, fs.statSync(path.join(f.lowers[0] as string, 'd/big')).blocks,
    'blocks are those of the data file');
  t.equal((await readFile(f.ov, 'd/big')).length, BIG, 'data read from the lower file');
  t.ok((await readFile(f.ov, 'd/big')).split('').every((c) => c === 'a'));
  // further metadata changes keep it a metacopy file
  await f.ov.setattr(ctx, big, { uid: 1234, gid: 2345 });
  await f.ov.setattr(ctx, big, { mtime: { sec: 1000, nsec: 5 } });
  await f.ov.setxattr(ctx, big, 'user.n', Buffer.from('1'), 0);
  await f.ov.removexattr(ctx, big, 'user.k');
  t.ok(hasMark(up), 'still metacopy after chown, utimens, setxattr, removexattr');
  t.equal(fs.statSync(up).uid, 1234);
  t.ok(fs.statSync(up).blocks * 512 < BIG / 4);
  // the first write brings the data in place and drops the mark
  await writeFile(f.ov, 'd/big', 'X');
  t.notOk(hasMark(up), 'mark gone after a write');
  const data = fs.readFileSync(up);
  t.equal(data.length, BIG);
  t.equal(data.toString('latin1', 0, 2), 'Xa', 'data copied, then written');
  t.equal(fs.statSync(up).mode & 0o7777, 0o600, 'metadata kept');
  t.equal(xattr(up, 'user.n'), '1');

  // other files: an empty one, and a utimens of a small one then a truncate
  await f.ov.setattr(ctx, walk(f.ov, 'd/empty'), { mode: 0o640 });
  t.ok(hasMark(path.join(f.upper, 'd/empty')), 'an empty file is a metacopy too, as in the kernel');
  const small = walk(f.ov, 'd/small');
  await f.ov.setattr(ctx, small, { atime: 'now', mtime: 'now' });
  t.ok(hasMark(path.join(f.upper, 'd/small')));
  await f.ov.setattr(ctx, small, { size: 5 });
  t.notOk(hasMark(path.join(f.upper, 'd/small')), 'truncate completes it');
  t.equal(fs.readFileSync(path.join(f.upper, 'd/small'), 'latin1'), 'small');
});

t.test('metacopy=on: an open for writing copies the data at once', async (t) => {
  const f = await fixture(1, ([l0]) => lowerFile(l0 as string), false, { metacopy: true });
  t.teardown(() => f.cleanup());
  const r = await f.ov.open(ctx, walk(f.ov, 'd/small'), O.O_RDWR);
  f.ov.release(r.fh);
  const up = path.join(f.upper, 'd/small');
  t.notOk(hasMark(up));
  t.equal(fs.readFileSync(up, 'latin1'), 'small data');
});

t.test('metacopy off (the default): chmod copies the data', async (t) => {
  const f = await fixture(1, ([l0]) => lowerFile(l0 as string));
  t.teardown(() => f.cleanup());
  await f.ov.setattr(ctx, walk(f.ov, 'd/big'), { mode: 0o600 });
  const up = path.join(f.upper, 'd/big');
  t.notOk(hasMark(up));
  t.ok(fs.statSync(up).blocks > 0, 'data blocks');
  t.equal(fs.readFileSync(up).toString('latin1', 0, 1), 'a');
});
