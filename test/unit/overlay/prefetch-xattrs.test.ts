/**
 * The xattr names of lower files come with the READDIRPLUS read-ahead
 * (src/overlay/prefetch.ts, RA_XATTRS): `ls -l` asks every file of a fresh mount for
 * security.selinux and system.posix_acl_access, and those first GETXATTRs then answer
 * without a listxattr on the JS thread, with the answers an overlay that reads nothing
 * ahead gives (names with and without xattrs, user.* ones, a set larger than the first
 * buffer the read-ahead tries, escaped overlay names, symlinks, directories, a file
 * under a lower directory above it), and whiteouts and opaque directories unchanged.
 */
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { Overlay } from '../../../src/overlay';
import { C, native } from '../../../src/native';
import type { State } from '../../../src/overlay/state';
import { apart, config, ctx, fixture, ls, plusBatch, put, walk } from './fixtures/helpers';

/** Calls of the addon's listxattr (the JS thread's), counted while `f` runs. */
function countListxattr<T>(f: () => T): { result: T; calls: number } {
  const real = native.listxattr;
  let calls = 0;
  native.listxattr = (...a: Parameters<typeof real>): string[] => {
    calls += 1;
    return real(...a);
  };
  try {
    return { result: f(), calls };
  } finally {
    native.listxattr = real;
  }
}

const ASKED = ['security.selinux', 'system.posix_acl_access', 'user.one', 'user.big.7', 'trusted.overlay.mine'];

/** what `ls -l` (and then getfattr) asks of each name of directory `p`: its xattrs */
function xattrsOf(ov: Overlay, p: string): Record<string, unknown> {
  const dir = walk(ov, p);
  const out: Record<string, unknown> = {};
  for (const n of ls(ov, p)) {
    const e = ov.lookup(ctx, dir, n);
    if (e === null) {
      out[n] = null;
      continue;
    }
    out[n] = {
      values: ASKED.map((a) => ov.getxattr(ctx, e.nodeId, a)?.toString('latin1') ?? null),
      names: ov.listxattr(ctx, e.nodeId).sort(),
    };
  }
  return out;
}

function layers(l0: string, l1: string): void {
  const set = (rel: string, name: string, value: string): void =>
    native.setxattr(path.join(l0, rel), name, Buffer.from(value), 0, false);
  for (let i = 0; i < 20; i++) put(l0, `d/plain${i}`, 'p');
  put(l0, 'd/one', '1');
  set('d/one', 'user.one', 'value one');
  put(l0, 'd/big', 'b');
  // more names than the read-ahead's first 1 KiB buffer holds: its ERANGE retry
  for (let i = 0; i < 40; i++) set('d/big', `user.big.${i}`, `v${i}`.padEnd(20, 'x'));
  put(l0, 'd/escaped', 'e');
  set('d/escaped', 'trusted.overlay.overlay.mine', 'the user\'s own');
  set('d/escaped', 'trusted.overlay.metacopy', '');
  fs.symlinkSync('one', path.join(l0, 'd/link'));
  put(l0, 'd/sub/x', 'x');
  set('d/sub', 'user.one', 'of a directory');
  // a directory in the top lower over a file of the same name below: the file is not the node's
  put(l0, 'd/shadow/inside', 'i');
  put(l1, 'd/shadow', 'file below');
  native.setxattr(path.join(l1, 'd/shadow'), 'user.one', Buffer.from('below'), 0, false);
  // whiteouts and an opaque directory over what the lower below has
  put(l1, 'd/gone', 'hidden');
  execFileSync('mknod', [path.join(l0, 'd/gone'), 'c', '0', '0']);
  put(l1, 'd/aufs', 'hidden too');
  put(l0, 'd/.wh.aufs', '');
  put(l0, 'd/opq/top', 't');
  set('d/opq', 'trusted.overlay.opaque', 'y');
  put(l1, 'd/opq/bottom', 'b');
  put(l1, 'd/only-below', 'o');
  native.setxattr(path.join(l1, 'd/only-below'), 'user.one', Buffer.from('from below'), 0, false);
}

t.test('a fresh mount\'s first getxattr of a lower file makes no listxattr, and answers as without read-ahead', async (t) => {
  const f = await fixture(2, ([l0, l1]) => layers(l0 as string, l1 as string), true);
  t.teardown(() => f.cleanup());
  const plain = await Overlay.open(config(apart(f.lowers)));
  t.teardown(() => plain.destroy());
  const expected = countListxattr(() => xattrsOf(plain, 'd'));
  t.ok(expected.calls >= 27, `without read-ahead each file is listed on the JS thread (${expected.calls})`);

  const entries = plusBatch(f.ov, 'd');
  await f.ov.prefetchLookups(walk(f.ov, 'd'), entries);
  const got = countListxattr(() => xattrsOf(f.ov, 'd'));
  t.same(got.result, expected.result, 'the same answers');
  t.equal(got.calls, 0, 'no listxattr on the JS thread after the read-ahead');
  const shown = got.result as Record<string, { values: (string | null)[]; names: string[] } | null>;
  t.same(Object.keys(shown).sort(), ['big', 'escaped', 'link', 'one', 'only-below', 'opq', 'shadow', 'sub',
    ...Array.from({ length: 20 }, (_v, i) => `plain${i}`)].sort(), 'whiteouts still hide their names');
  t.same(shown.one?.values, [null, null, 'value one', null, null]);
  t.equal(shown.big?.names.length, 40);
  t.same(shown.escaped?.names, ['trusted.overlay.mine'], 'an escaped name shown, the overlay\'s own hidden');
  t.same(shown.shadow?.names, [], 'the directory on top, not the file below');
  t.same(shown['only-below']?.values[2], 'from below');
  t.same(shown.sub?.values[2], 'of a directory');
  t.same(ls(f.ov, 'd/opq'), ['top'], 'the opaque directory still opaque');
});

t.test('the xattr names read ahead are kept in the lower caches: a second mount lists none either', async (t) => {
  const f = await fixture(1, ([l0]) => {
    for (let i = 0; i < 10; i++) put(l0 as string, `d/f${i}`, 'f');
    native.setxattr(path.join(l0 as string, 'd/f3'), 'user.x', Buffer.from('3'), 0, false);
  }, true);
  t.teardown(() => f.cleanup());
  const before = f.ov.cacheSizes.statBytes;
  await f.ov.prefetchLookups(walk(f.ov, 'd'), plusBatch(f.ov, 'd'));
  const grown = f.ov.cacheSizes.statBytes - before;
  t.ok(grown > 0, 'counted in the attributes\' byte bound');
  // the same lowers by the same paths: the second mount shares what the first read
  const second = await Overlay.open(config(f.lowers));
  t.teardown(() => second.destroy());
  t.equal(second.prefetchLookups(walk(second, 'd'), plusBatch(second, 'd')), undefined, 'nothing left to read');
  const got = countListxattr(() => xattrsOf(second, 'd'));
  t.equal(got.calls, 0);
  t.same((got.result as Record<string, { names: string[] }>).f3?.names, ['user.x']);
});

t.test('a walk reads no xattr names ahead: `find` and `tar` ask for none', async (t) => {
  const f = await fixture(1, ([l0]) => {
    for (let i = 0; i < 10; i++) put(l0 as string, `top/d/f${i}`, 'f');
    put(l0 as string, 'top/g', 'g');
  }, true);
  t.teardown(() => f.cleanup());
  // the listing of top (its parent, the root, not listed): its files' names read ahead
  await f.ov.prefetchLookups(walk(f.ov, 'top'), plusBatch(f.ov, 'top'));
  // (what `ls -l` asks: two values of each entry, no list of names)
  const lsl = (p: string): number => countListxattr(() => {
    const dir = walk(f.ov, p);
    for (const n of ls(f.ov, p)) {
      const e = f.ov.lookup(ctx, dir, n);
      if (e !== null) for (const a of ASKED.slice(0, 2)) f.ov.getxattr(ctx, e.nodeId, a);
    }
  }).calls;
  t.equal(lsl('top'), 0, 'a listing outside a walk');
  // top/d below a listed top: a walk, whose files' attributes only are read ahead
  const before = f.ov.cacheSizes.stats;
  await f.ov.prefetchLookups(walk(f.ov, 'top/d'), plusBatch(f.ov, 'top/d'));
  t.equal(f.ov.cacheSizes.stats - before, 10, 'the attributes read ahead');
  t.equal(countListxattr(() => xattrsOf(f.ov, 'top/d')).calls, 10, 'the xattr names read when asked');
});

t.test('a walk that asks each entry\'s xattrs (containers-storage\'s naive diff) reads them ahead once it has asked one', async (t) => {
  const f = await fixture(2, ([l0, l1]) => {
    for (const d of ['a', 'b', 'c']) {
      for (let i = 0; i < 10; i++) put(i % 2 === 0 ? l0 as string : l1 as string, `top/${d}/f${i}`, 'f');
    }
    native.setxattr(path.join(l1 as string, 'top/b/f3'), 'user.one', Buffer.from('one of b'), 0, false);
    put(l0 as string, 'top/g', 'g');
  }, true);
  t.teardown(() => f.cleanup());
  const plain = await Overlay.open(config(apart(f.lowers)));
  t.teardown(() => plain.destroy());
  // as the diff walks: a directory listed, every entry's xattrs asked (its names and
  // security.capability), then its subdirectories entered in order
  const diff = async (ov: Overlay): Promise<{ result: Record<string, unknown>[]; calls: number[] }> => {
    const result: Record<string, unknown>[] = [];
    const calls: number[] = [];
    for (const d of ['', 'a', 'b', 'c']) {
      await ov.prefetchLookups(walk(ov, `top/${d}`), plusBatch(ov, `top/${d}`));
      const got = countListxattr(() => xattrsOf(ov, `top/${d}`));
      result.push(got.result);
      calls.push(got.calls);
    }
    return { result, calls };
  };
  // what an overlay that reads nothing ahead answers
  const expected = ['', 'a', 'b', 'c'].map((d) => xattrsOf(plain, `top/${d}`));
  const got = await diff(f.ov);
  t.same(got.result, expected, 'the same answers as without read-ahead');
  t.same((got.result[2] as Record<string, { names: string[] }>).f3?.names, ['user.one']);
  // top's names read ahead as any listing outside a walk; those of the files below once
  // the walk has asked a list of names (before: 10 in each of a, b and c)
  t.same(got.calls, [0, 0, 0, 0], 'no listxattr on the JS thread');
  // a walk that asked none (find, tar) reads none ahead; once one asks them, the files
  // whose attributes were read ahead without names (those of top/e and top/f, read below
  // top/d when the walk entered it) are read again with them
  const quiet = await fixture(1, ([l0]) => {
    for (const d of ['d', 'e', 'f']) for (let i = 0; i < 10; i++) put(l0 as string, `top/${d}/f${i}`, 'f');
  }, true);
  t.teardown(() => quiet.cleanup());
  await quiet.ov.prefetchLookups(walk(quiet.ov, 'top'), plusBatch(quiet.ov, 'top'));
  await quiet.ov.prefetchLookups(walk(quiet.ov, 'top/d'), plusBatch(quiet.ov, 'top/d'));
  t.equal(countListxattr(() => xattrsOf(quiet.ov, 'top/d')).calls, 10, 'no names read ahead where none were asked');
  await quiet.ov.prefetchLookups(walk(quiet.ov, 'top/e'), plusBatch(quiet.ov, 'top/e'));
  t.equal(countListxattr(() => xattrsOf(quiet.ov, 'top/e')).calls, 0, 'read again with their names');
  t.same(xattrsOf(quiet.ov, 'top/e'), xattrsOf(plain, 'top/a'), 'and answered as without read-ahead');
});

/** The names the read-ahead asks a statx of (RA_STAT), recorded until `stop`. */
function recordPoolStats(): { names: string[]; stop(): void } {
  const real = native.readAhead;
  const names: string[] = [];
  native.readAhead = (...a: Parameters<typeof real>): ReturnType<typeof real> => {
    const [, , joined, wants] = a;
    joined.split('/').forEach((n, i) => {
      if (((wants[i] as number) & C.RA_STAT) !== 0) names.push(n);
    });
    return real(...a);
  };
  return { names, stop: () => void (native.readAhead = real) };
}

t.test('a walk that starts asking xattrs midway lists those of the files it read ahead, with no second statx', async (t) => {
  // as `getcap -r` walks a fresh mount (one xattr of each entry): the first files below
  // the first level have their xattr names listed on the JS thread (the walk's
  // read-ahead listed none), after the read-ahead below read the statx of the files of
  // the directories it walks next
  const f = await fixture(1, ([l0]) => {
    for (const d of ['a', 'b']) for (let i = 0; i < 10; i++) put(l0 as string, `top/${d}/${d}${i}`, d);
    native.setxattr(path.join(l0 as string, 'top/b/b3'), 'user.one', Buffer.from('three'), 0, false);
    fs.symlinkSync('b3', path.join(l0 as string, 'top/b/link'));
  }, true);
  t.teardown(() => f.cleanup());
  const plain = await Overlay.open(config(apart(f.lowers)));
  t.teardown(() => plain.destroy());
  const expected = countListxattr(() => xattrsOf(plain, 'top/b')).result;
  const st = (f.ov as unknown as { st: State }).st;
  const stats = recordPoolStats();
  t.teardown(stats.stop);
  await f.ov.prefetchLookups(walk(f.ov, 'top'), plusBatch(f.ov, 'top'));
  // top/a below a listed top: a walk; its read-ahead reads below its sibling top/b too
  await f.ov.prefetchLookups(walk(f.ov, 'top/a'), plusBatch(f.ov, 'top/a'));
  await Promise.all(st.readAhead.pending.values());
  const bNames = (): string[] => stats.names.filter((n) => /^(b\d|link)$/.test(n)).sort();
  t.equal(bNames().length, 11, 'the statx of top/b\'s entries read ahead below top/a');
  t.equal(countListxattr(() => xattrsOf(f.ov, 'top/a')).calls, 10, 'top/a\'s xattr names listed when asked');
  stats.names.length = 0;
  await f.ov.prefetchLookups(walk(f.ov, 'top/b'), plusBatch(f.ov, 'top/b'));
  t.same(bNames(), [], 'no statx of top/b\'s entries again');
  const got = countListxattr(() => xattrsOf(f.ov, 'top/b'));
  t.equal(got.calls, 0, 'their xattr names read ahead: none listed on the JS thread');
  t.same(got.result, expected, 'the same answers as without read-ahead');
});

t.test('a walk after one lower object\'s names were listed reads none ahead once a directory\'s went unasked', async (t) => {
  const f = await fixture(1, ([l0]) => {
    for (const d of ['a', 'b', 'c']) for (let i = 0; i < 10; i++) put(l0 as string, `top/${d}/sub/f${i}`, 'f');
    put(l0 as string, 'top/g', 'g');
    put(l0 as string, 'file', 'x');
    native.setxattr(path.join(l0 as string, 'file'), 'user.one', Buffer.from('1'), 0, false);
  }, true);
  t.teardown(() => f.cleanup());
  // one `getfattr -d` of a lower file: its names listed on the JS thread
  t.same(f.ov.listxattr(ctx, (f.ov.lookup(ctx, 1, 'file') as { nodeId: number }).nodeId), ['user.one']);
  // then a walk that asks no xattrs (`find`, `tar`): top (its file's names read ahead, as
  // outside a walk), then each subdirectory and the one below it
  for (const d of ['top', 'top/a', 'top/a/sub', 'top/b', 'top/b/sub', 'top/c', 'top/c/sub']) {
    await f.ov.prefetchLookups(walk(f.ov, d), plusBatch(f.ov, d));
  }
  // the files below were read ahead without their names (before: with them, 0 here)
  t.equal(countListxattr(() => xattrsOf(f.ov, 'top/c/sub')).calls, 10, 'no names read ahead after a listing whose names went unasked');
});
