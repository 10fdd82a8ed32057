/**
 * Read-ahead for READDIRPLUS (src/overlay/prefetch.ts): the lower attributes and
 * subdirectory listings a batch's lookups need are read on the thread pool and kept in
 * the lower caches; lookups then answer as they would have, the upper is never read
 * ahead, and a change made in the upper through the mount shows at once.
 *
 * As in cache.test.ts, lowers are changed behind the overlay on purpose, to see what it
 * answers from memory.
 */
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import type { DirEntryOut } from '../../../src/fuse/api';
import { Overlay } from '../../../src/overlay';
import type { State } from '../../../src/overlay/state';
import { native } from '../../../src/native';
import { apart, config, ctx, fixture, ls, plusBatch, put, readdirAll, recordPoolCalls, walk, R } from './fixtures/helpers';

const O = fs.constants;

/** what a lookup of each name of `p` answers: type, mode, size, ino, or null */
function looked(ov: Overlay, p: string, names: string[]): unknown[] {
  const dir = walk(ov, p);
  return names.map((n) => {
    const e = ov.lookup(ctx, dir, n);
    return e === null ? null : { mode: e.attr.mode, size: e.attr.size, ino: e.attr.ino, nlink: e.attr.nlink };
  });
}

function layers(l0: string, l1: string): void {
  put(l0, 'd/a', 'top a');
  put(l0, 'd/sub/x', 'x');
  put(l0, 'd/.wh.hidden', '');
  put(l1, 'd/a', 'bottom a, longer');
  put(l1, 'd/b', 'b');
  put(l1, 'd/hidden', 'h');
  put(l1, 'd/sub/y', 'y');
  put(l1, 'd/opq/z', 'z');
  put(l0, 'd/opq/.wh..wh..opq', '');
  put(l0, 'd/opq/w', 'w');
  execFileSync('mknod', [path.join(l0, 'd/wh'), 'c', '0', '0']);
  put(l1, 'd/wh', 'under a whiteout');
}

t.test('lookups after the read-ahead answer as without it, from memory', async (t) => {
  const names = ['a', 'b', 'hidden', 'opq', 'sub', 'wh', 'nothing'];
  const f = await fixture(2, ([l0, l1]) => layers(l0 as string, l1 as string), true);
  t.teardown(() => f.cleanup());
  // what an overlay over the same layers that reads nothing ahead answers
  const plain = await Overlay.open(config(apart(f.lowers)));
  t.teardown(() => plain.destroy());
  const expected = looked(plain, 'd', names);
  const expectedSub = ls(plain, 'd/sub');

  const entries = plusBatch(f.ov, 'd');
  t.same(entries.map((e) => e.name).filter((n) => n !== '.' && n !== '..').sort(), ['a', 'b', 'opq', 'sub']);
  const before = f.ov.cacheSizes;
  const ahead = f.ov.prefetchLookups(walk(f.ov, 'd'), entries);
  t.ok(ahead instanceof Promise, 'cold: the read-ahead goes to the thread pool');
  await ahead;
  const after = f.ov.cacheSizes;
  // sub and opq in both lowers, b in the bottom one, a only in the top one (a file
  // there ends its lookup: the bottom a is never asked for); sub and opq listed in each
  t.equal(after.stats - before.stats, 6, 'the attributes of each lower object a lookup of the batch reads');
  t.equal(after.listings - before.listings, 4, 'the listings of the lower subdirectories');
  t.equal(f.ov.prefetchLookups(walk(f.ov, 'd'), entries), undefined, 'warm: nothing left to read');

  // behind the overlay: what it answers now comes from the read-ahead
  fs.chmodSync(path.join(f.lowers[0] as string, 'd/a'), 0o600);
  fs.writeFileSync(path.join(f.lowers[1] as string, 'd/sub/late'), '');
  t.same(looked(f.ov, 'd', names), expected, 'the same answers as an overlay without read-ahead');
  t.same(ls(f.ov, 'd/sub'), ['x', 'y'], 'a subdirectory listed by the read-ahead');
  t.same(ls(f.ov, 'd/opq'), ['w'], 'the AUFS opaque marker read from the read-ahead listing');
  t.same(ls(f.ov, 'd/sub'), expectedSub);
});

t.test('one thread-pool call per batch: every lower\'s attributes, listings and xattr names', async (t) => {
  const f = await fixture(3, ([l0, l1, l2]) => {
    layers(l0 as string, l1 as string);
    put(l2 as string, 'd/sub/deep/z', 'z');
    put(l2 as string, 'd/c', 'c');
  }, true);
  t.teardown(() => f.cleanup());
  const d = walk(f.ov, 'd');
  const entries = plusBatch(f.ov, 'd');
  const { calls, stop } = recordPoolCalls((type) => type.startsWith('stratafs.'));
  t.teardown(stop);
  const before = f.ov.cacheSizes;
  await f.ov.prefetchLookups(d, entries);
  stop();
  const after = f.ov.cacheSizes;
  t.equal(calls.length, 1, `one pool call (${calls.join(', ')})`);
  // a and wh in the top lower end there; b in the middle; c in the bottom; sub in all
  // three and opq in two, each listed where it is
  t.equal(after.stats - before.stats, 8, 'the attributes from all three lowers');
  t.equal(after.listings - before.listings, 5, 'the listings of the subdirectories in each lower');
  t.equal(f.ov.prefetchLookups(d, entries), undefined, 'nothing left to read');
  t.same(ls(f.ov, 'd/sub'), ['deep', 'x', 'y']);
});

t.test('the overlay marks of lower subdirectories come with the read-ahead', async (t) => {
  const f = await fixture(2, ([l0, l1]) => {
    put(l0 as string, 'd/x/top', 't');
    put(l1 as string, 'd/x/bottom', 'b');
    put(l0 as string, 'd/y/top', 't');
    put(l1 as string, 'd/y/bottom', 'b');
    native.setxattr(path.join(l0 as string, 'd/x'), 'trusted.overlay.opaque', Buffer.from('y'), 0, false);
  }, true);
  t.teardown(() => f.cleanup());
  const plain = await Overlay.open(config(apart(f.lowers)));
  t.teardown(() => plain.destroy());
  t.same([ls(plain, 'd/x'), ls(plain, 'd/y')], [['top'], ['bottom', 'top']], 'x is opaque, y merges');
  const d = walk(f.ov, 'd');
  await f.ov.prefetchLookups(d, plusBatch(f.ov, 'd'));
  // behind the overlay, y gains a mark: the lookups know y's xattr names from the
  // read-ahead (none), so it still merges; x's mark was read ahead (its value is read
  // when a name says it is there)
  native.setxattr(path.join(f.lowers[0] as string, 'd/y'), 'trusted.overlay.opaque', Buffer.from('y'), 0, false);
  t.same([ls(f.ov, 'd/x'), ls(f.ov, 'd/y')], [['top'], ['bottom', 'top']], 'the marks read ahead');
});

t.test('the upper is never read ahead: changes through the mount show at once', async (t) => {
  const f = await fixture(2, ([l0, l1], upper) => {
    layers(l0 as string, l1 as string);
    put(upper, 'd/up', 'upper file');
  });
  t.teardown(() => f.cleanup());
  const d = walk(f.ov, 'd');
  const entries = plusBatch(f.ov, 'd');
  await f.ov.prefetchLookups(d, entries);
  t.equal(f.ov.prefetchLookups(d, entries), undefined);

  t.not(f.ov.lookup(ctx, d, 'up'), null, 'an upper name');
  await f.ov.unlink(ctx, d, 'a');
  t.equal(f.ov.lookup(ctx, d, 'a'), null, 'unlink of a read-ahead lower file: a whiteout, seen at once');
  await f.ov.rename(ctx, d, 'b', d, 'b2', R);
  t.equal(f.ov.lookup(ctx, d, 'b'), null, 'rename: the old name is gone');
  t.equal(f.ov.lookup(ctx, d, 'b2')?.attr.size, 1, 'rename: the new name');
  const c = await f.ov.create(ctx, d, 'hidden', 0o644, O.O_RDWR);
  f.ov.release(c.open.fh);
  t.equal(f.ov.lookup(ctx, d, 'hidden')?.attr.size, 0, 'a name an AUFS whiteout hid, created in the upper');
  await f.ov.rmdir(ctx, d, 'opq').catch(() => undefined); // not empty: refused
  t.not(f.ov.lookup(ctx, d, 'opq'), null);
  // behind the overlay, in the upper: read when looked up, never from a read-ahead
  put(f.upper, 'd/behind', 'b');
  t.not(f.ov.lookup(ctx, d, 'behind'), null, 'the upper is read at the lookup');
  t.same(ls(f.ov, 'd'), ['b2', 'behind', 'hidden', 'opq', 'sub', 'up']);
  // a read-ahead after the changes reads only the lowers again, and changes no answer
  const again = plusBatch(f.ov, 'd');
  await f.ov.prefetchLookups(d, again);
  t.equal(f.ov.lookup(ctx, d, 'a'), null);
  t.equal(f.ov.lookup(ctx, d, 'b'), null);
});

t.test('a removed directory or one without lowers reads nothing ahead', async (t) => {
  const f = await fixture(1, ([l0], upper) => {
    put(l0 as string, 'low/f', 'f');
    put(upper, 'up/f', 'f');
  });
  t.teardown(() => f.cleanup());
  t.equal(f.ov.prefetchLookups(walk(f.ov, 'up'), plusBatch(f.ov, 'up')), undefined, 'an upper-only directory');
  t.equal(f.ov.prefetchLookups(424242, []), undefined, 'an unknown node');
  const low = walk(f.ov, 'low');
  const entries = plusBatch(f.ov, 'low');
  await f.ov.unlink(ctx, low, 'f');
  await f.ov.rmdir(ctx, 1, 'low');
  t.equal(f.ov.prefetchLookups(low, entries), undefined, 'a removed directory');
});

/** a READDIRPLUS walk below `id` as the kernel makes one: batch, read-ahead, lookups, then each subdirectory */
async function plusWalk(ov: Overlay, id: number, prefix: string, seen: Map<string, unknown>): Promise<number> {
  const { fh } = ov.opendir(ctx, id);
  let entries: DirEntryOut[];
  try {
    entries = readdirAll(ov, fh);
  } finally {
    ov.releasedir(fh);
  }
  await ov.prefetchLookups(id, entries);
  let dirs = 1;
  for (const e of entries) {
    if (e.name === '.' || e.name === '..') continue;
    const found = ov.lookup(ctx, id, e.name);
    if (found === null) continue;
    seen.set(prefix + e.name, { mode: found.attr.mode, size: found.attr.size, ino: found.attr.ino, nlink: found.attr.nlink });
    if ((found.attr.mode & O.S_IFMT) === O.S_IFDIR) dirs += await plusWalk(ov, found.nodeId, `${prefix}${e.name}/`, seen);
  }
  return dirs;
}

t.test('a walk reads ahead below the directory it lists: fewer pool calls than directories', async (t) => {
  const tree = (l0: string, l1: string): void => {
    for (let a = 0; a < 4; a++) {
      for (let b = 0; b < 5; b++) {
        for (let c = 0; c < 6; c++) put(c % 2 === 0 && a !== 3 ? l0 : l1, `d/t${a}/s${b}/f${c}`, `file ${a} ${b} ${c}`);
      }
      put(l1, `d/t${a}/s9/.wh.gone`, '');
    }
    put(l0, 'd/t1/s2/.wh.f1', ''); // hides l1's f1 there
    put(l0, 'd/t3', 'a file over the bottom directory'); // ends t3's merge in the top lower
  };
  const f = await fixture(2, ([l0, l1]) => tree(l0 as string, l1 as string), true);
  t.teardown(() => f.cleanup());
  const plain = await Overlay.open(config(apart(f.lowers)));
  t.teardown(() => plain.destroy());
  const { calls, stop } = recordPoolCalls((type) => type === 'stratafs.readAhead');
  t.teardown(stop);
  const seen = new Map<string, unknown>();
  const dirs = await plusWalk(f.ov, 1, '', seen);
  stop();
  // what the lookups answer, walked without READDIRPLUS (nothing read ahead)
  const expected = new Map<string, unknown>();
  const look = (id: number, prefix: string): void => {
    const { fh } = plain.opendir(ctx, id);
    const names = readdirAll(plain, fh).map((e) => e.name).filter((n) => n !== '.' && n !== '..');
    plain.releasedir(fh);
    for (const n of names) {
      const e = plain.lookup(ctx, id, n);
      if (e === null) continue;
      expected.set(prefix + n, { mode: e.attr.mode, size: e.attr.size, ino: e.attr.ino, nlink: e.attr.nlink });
      if ((e.attr.mode & O.S_IFMT) === O.S_IFDIR) look(e.nodeId, `${prefix}${n}/`);
    }
  };
  look(1, '');
  t.same([...seen.entries()].sort(), [...expected.entries()].sort(), 'the same answers as without read-ahead');
  t.equal(dirs, 1 + 1 + 3 + 3 * 6, 'the directories walked (t3 is a file, s9 an empty one in each t)');
  // root, d, and one call below each directory that has subdirectories (d, t0-t2)
  t.ok(calls.length < dirs, `${calls.length} pool calls for ${dirs} directories`);
  t.ok(calls.length <= 6, `${calls.length} pool calls`);
});

t.test('a walk from the root reads ahead for the first level and for runs of small sibling directories together', async (t) => {
  // as in a Debian rootfs: /usr/share/locale/LANG/LC_MESSAGES/ of one file each, a few
  // first-level directories, split over two lowers
  const LANGS = 12;
  const tree = (l0: string, l1: string): void => {
    for (let i = 0; i < LANGS; i++) put(i % 2 === 0 ? l0 : l1, `usr/share/locale/l${i}/LC_MESSAGES/m${i}.mo`, `mo ${i}`);
    put(l1, 'usr/bin/sh', 'sh');
    for (let i = 0; i < 4; i++) put(l0, `etc/e${i}/conf`, `conf ${i}`);
    put(l1, 'var/lib/dpkg/status', 'status');
    put(l0, 'var/cache/c', 'c');
  };
  const f = await fixture(2, ([l0, l1]) => tree(l0 as string, l1 as string), true);
  t.teardown(() => f.cleanup());
  const plain = await Overlay.open(config(apart(f.lowers)));
  t.teardown(() => plain.destroy());
  const expected = new Map<string, unknown>();
  await plusWalk(plain, 1, '', expected);
  const { calls, stop } = recordPoolCalls((type) => type === 'stratafs.readAhead');
  t.teardown(stop);
  const seen = new Map<string, unknown>();
  const dirs = await plusWalk(f.ov, 1, '', seen);
  stop();
  t.same([...seen.entries()].sort(), [...expected.entries()].sort(), 'the same answers');
  t.equal(dirs, 1 + 3 + 2 + 1 + 2 * LANGS + 4 + 3, 'the directories walked');
  // the root's own; one below it for usr, etc and var (otherwise a call of each that
  // its reply waits for); below usr, share, locale, var, var/lib and etc; below the
  // LANGs together (otherwise one call per LANG): 9 (22 when each directory reads
  // ahead below itself alone)
  t.ok(calls.length <= 9, `${calls.length} pool calls for ${dirs} directories`);
});

t.test('a READDIRPLUS whose parent was not listed reads nothing below it', async (t) => {
  const f = await fixture(1, ([l0]) => {
    for (let b = 0; b < 3; b++) for (let c = 0; c < 4; c++) put(l0 as string, `p/d/s${b}/f${c}`, 'f');
  }, true);
  t.teardown(() => f.cleanup());
  const d = walk(f.ov, 'p/d');
  const entries = plusBatch(f.ov, 'p/d');
  const before = f.ov.cacheSizes;
  await f.ov.prefetchLookups(d, entries);
  await new Promise((resolve) => setImmediate(resolve));
  const after = f.ov.cacheSizes;
  t.equal(after.stats - before.stats, 3, 'the attributes of the batch\'s names only');
  t.equal(after.listings - before.listings, 3, 'and the listings of its subdirectories');
});

t.test('a listing read in pages looks at each name once for the read-ahead, not at the whole rest per page', async (t) => {
  const FILES = 1000;
  // a READDIRPLUS page of 4 KiB holds about this many entries
  const PER_PAGE = 25;
  const f = await fixture(1, ([l0]) => {
    for (let i = 0; i < FILES; i++) put(l0 as string, `big/file-${i}`, 'f');
  }, true);
  t.teardown(() => f.cleanup());
  const st = (f.ov as unknown as { st: State }).st;
  const has = st.caches.hasLowerStat.bind(st.caches);
  let asked = 0;
  st.caches.hasLowerStat = (layer, p) => {
    asked++;
    return has(layer, p);
  };
  const { calls, stop } = recordPoolCalls((type) => type === 'stratafs.readAhead');
  t.teardown(stop);
  const dir = walk(f.ov, 'big');
  // as the bridge reads it without a handle: each READDIRPLUS is handed the rest of the
  // listing (readdir's batch), reads ahead for it and looks up the names its page holds
  const found: string[] = [];
  let waited = 0;
  for (let off = 0; ;) {
    const entries = f.ov.readdir(0, off, dir);
    if (entries.length === 0) break;
    const ahead = f.ov.prefetchLookups(dir, entries, PER_PAGE);
    if (ahead !== undefined) waited++;
    await ahead;
    const page = entries.slice(0, PER_PAGE);
    for (const e of page) {
      if (e.name === '.' || e.name === '..') continue;
      if (f.ov.lookup(ctx, dir, e.name) !== null) found.push(e.name);
    }
    off = (page[page.length - 1] as DirEntryOut).nextOffset;
  }
  stop();
  t.equal(found.length, FILES, 'every name listed and found');
  t.equal(asked, FILES, 'each name looked at once (the rest of the listing per page: about 16,000)');
  // the first batch (READDIR_BATCH names) read ahead at once, the rest once a page
  // reaches past it (not a call for the few names each page brought: 21 pages waited)
  t.equal(waited, 2, 'two pages of 41 waited for the thread pool');
  t.ok(calls.length > 1 && calls.length <= 2 * 4, `${calls.length} pool calls, names past the first batch read ahead too`);
});
