/**
 * What the warm metadata paths answer from memory must still follow every change made
 * through the mount: a lookup of a known lower-only name in a lower-only directory
 * (lookup.ts knownLowerChild) and the xattrs of a node still only in the lowers (the
 * lower index of xattr.ts). Each case primes the memory first (lookup, getxattr,
 * listxattr), then changes the object through the overlay, then reads again.
 */
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { constants } from 'node:os';
import { ctx, fixture, look, put, readFile, walk, withErrno } from './fixtures/helpers';

function setx(p: string, name: string, value: string): void {
  execFileSync('setfattr', ['-h', '-n', name, '-v', value, p]);
}
function getx(p: string, name: string): string | null {
  try {
    return execFileSync('getfattr', ['-h', '--only-values', '-n', name, p], { stdio: ['ignore', 'pipe', 'ignore'] }).toString('latin1');
  } catch {
    return null;
  }
}

const val = (b: Buffer | null): string | null => (b === null ? null : b.toString('latin1'));

t.test('the lower xattr index follows setxattr, removexattr and copy-up', async (t) => {
  const f = await fixture(2, ([l0, l1]) => {
    put(l1 as string, 'd/a', 'a');
    put(l1 as string, 'd/b', 'b');
    put(l0 as string, 'd/c', 'c');
    put(l1 as string, 'd/plain', 'p');
    setx(path.join(l1 as string, 'd/a'), 'user.one', '1');
    setx(path.join(l1 as string, 'd/b'), 'user.one', '1');
    setx(path.join(l0 as string, 'd/c'), 'user.one', '1');
  });
  t.teardown(() => f.cleanup());
  const l1 = f.lowers[1] as string;

  // setxattr of a lower file through the mount, after its index was read
  const a = walk(f.ov, 'd/a');
  t.same(f.ov.listxattr(ctx, a), ['user.one']);
  t.equal(val(f.ov.getxattr(ctx, a, 'user.one')), '1');
  t.equal(f.ov.getxattr(ctx, a, 'user.two'), null, 'a name the lower file lacks');
  await f.ov.setxattr(ctx, a, 'user.two', Buffer.from('2'), 0);
  t.equal(val(f.ov.getxattr(ctx, a, 'user.two')), '2', 'the new attribute is seen');
  t.same(f.ov.listxattr(ctx, a).sort(), ['user.one', 'user.two']);
  await f.ov.setxattr(ctx, a, 'user.one', Buffer.from('changed'), 0);
  t.equal(val(f.ov.getxattr(ctx, a, 'user.one')), 'changed', 'a changed value is seen');
  t.equal(getx(path.join(l1, 'd/a'), 'user.one'), '1', 'the lower file is untouched');

  // removexattr of a lower file's attribute after its index was read
  const b = walk(f.ov, 'd/b');
  t.equal(val(f.ov.getxattr(ctx, b, 'user.one')), '1');
  await f.ov.removexattr(ctx, b, 'user.one');
  t.equal(f.ov.getxattr(ctx, b, 'user.one'), null, 'the removed attribute is gone');
  t.same(f.ov.listxattr(ctx, b), []);
  t.equal(getx(path.join(l1, 'd/b'), 'user.one'), '1', 'the lower file keeps it');

  // a file copied up by a chmod: its xattrs are the upper copy's from then on
  const c = walk(f.ov, 'd/c');
  t.equal(val(f.ov.getxattr(ctx, c, 'user.one')), '1');
  t.same(f.ov.listxattr(ctx, c), ['user.one']);
  await f.ov.setattr(ctx, c, { mode: 0o600 });
  t.ok(fs.existsSync(path.join(f.upper, 'd/c')), 'copied up');
  // the upper copy is what is read now: a change there shows, the lower index does not answer
  setx(path.join(f.upper, 'd/c'), 'user.one', 'upper');
  setx(path.join(f.upper, 'd/c'), 'user.three', '3');
  t.equal(val(f.ov.getxattr(ctx, c, 'user.one')), 'upper');
  t.same(f.ov.listxattr(ctx, c).sort(), ['user.one', 'user.three']);

  // a file without any: ENODATA from memory, until one is set
  const p = walk(f.ov, 'd/plain');
  t.equal(f.ov.getxattr(ctx, p, 'security.selinux'), null);
  t.same(f.ov.listxattr(ctx, p), []);
  await f.ov.setxattr(ctx, p, 'user.x', Buffer.from('x'), 0);
  t.equal(val(f.ov.getxattr(ctx, p, 'user.x')), 'x');
  t.same(f.ov.listxattr(ctx, p), ['user.x']);
});

t.test('a known lower name in a lower directory follows changes made through the mount', async (t) => {
  const f = await fixture(2, ([l0, l1]) => {
    put(l1 as string, 'd/a', 'a');
    put(l1 as string, 'd/b', 'bb');
    put(l0 as string, 'd/c', 'ccc');
    put(l1 as string, 'd/e', 'e');
  });
  t.teardown(() => f.cleanup());
  const d = walk(f.ov, 'd');
  const a = look(f.ov, d, 'a');
  t.equal(look(f.ov, d, 'a').nodeId, a.nodeId, 'a known name: the same node');
  t.equal(a.attr.mode & 0o7777, fs.statSync(path.join(f.lowers[1] as string, 'd/a')).mode & 0o7777);

  // a chmod copies it (and its directory) up: the next lookup reports the upper file
  await f.ov.setattr(ctx, a.nodeId, { mode: 0o604 });
  const a2 = look(f.ov, d, 'a');
  t.equal(a2.nodeId, a.nodeId);
  t.equal(a2.attr.mode & 0o7777, 0o604, 'the new mode');

  // another name renamed over a known one: the lookup finds the renamed file
  look(f.ov, d, 'b');
  look(f.ov, d, 'c');
  await f.ov.rename(ctx, d, 'c', d, 'b', { noReplace: false, exchange: false, whiteout: false });
  const b = look(f.ov, d, 'b');
  t.equal(Number(b.attr.size), 3, 'b is the old c');
  t.equal(await readFile(f.ov, 'd/b'), 'ccc');
  t.equal(f.ov.lookup(ctx, d, 'c'), null, 'c is gone');

  // unlink of a known lower name
  look(f.ov, d, 'e');
  await f.ov.unlink(ctx, d, 'e');
  t.equal(f.ov.lookup(ctx, d, 'e'), null, 'e is gone');
  t.throws(() => walk(f.ov, 'd/e'), withErrno(constants.errno.ENOENT));
});

t.test('a known lower name under a lower directory whose parent was copied up by a chmod', async (t) => {
  const f = await fixture(1, ([l0]) => {
    put(l0 as string, 'x/y/z', 'z');
  });
  t.teardown(() => f.cleanup());
  const y = walk(f.ov, 'x/y');
  const z = look(f.ov, y, 'z');
  await f.ov.setattr(ctx, y, { mode: 0o700 });
  t.equal(f.ov.getattr(ctx, y).mode & 0o7777, 0o700);
  // the file itself is still only in the lower: the same node, the lower's attributes
  const z2 = look(f.ov, y, 'z');
  t.equal(z2.nodeId, z.nodeId);
  t.equal(Number(z2.attr.size), 1);
  await f.ov.unlink(ctx, y, 'z');
  t.equal(f.ov.lookup(ctx, y, 'z'), null, 'whiteout in the copied-up directory hides it');
});
