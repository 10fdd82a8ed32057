/**
 * Listings without a directory handle (fh 0: the kernel opened the directory itself,
 * FUSE_NO_OPENDIR_SUPPORT): offsets belong to names (src/overlay/dir-cookies.ts), so a
 * listing read in pieces while the directory changes, by one reader or two at once,
 * repeats no name and skips none that stayed; offset 0 sees every change; the listing
 * kept between pieces is dropped at its end and when its node is forgotten.
 */
import t from 'tap';
import * as fs from 'node:fs';
import { constants } from 'node:os';
import type { DirEntryOut } from '../../../src/fuse/api';
import type { Overlay } from '../../../src/overlay';
import type { State } from '../../../src/overlay/state';
import { ListingStore, LISTINGS_KEPT, assignCookies, firstAfter, nameCookie } from '../../../src/overlay/dir-cookies';
import type { Node } from '../../../src/overlay/inodes';
import { ctx, fixture, put, walk, withErrno } from './fixtures/helpers';

const stateOf = (ov: Overlay): State => (ov as unknown as { st: State }).st;

/** reads `dir` without a handle from `off`, `per` entries at a time, calling `between` after each piece */
function readInPieces(ov: Overlay, dir: number, per: number, between: (piece: number) => Promise<void> | void = () => undefined): Promise<string[]> {
  const got: string[] = [];
  return (async () => {
    let off = 0;
    for (let piece = 0; ; piece++) {
      const ents = ov.readdir(0, off, dir).slice(0, per);
      if (ents.length === 0) return got;
      for (const e of ents) got.push(e.name);
      off = (ents[ents.length - 1] as DirEntryOut).nextOffset;
      await between(piece);
    }
  })();
}

const names = (prefix: string, from: number, to: number): string[] => Array.from({ length: to - from }, (_, i) => `${prefix}${from + i}`);

async function touch(ov: Overlay, dir: number, name: string): Promise<void> {
  const r = await ov.create(ctx, dir, name, 0o644, fs.constants.O_WRONLY);
  ov.release(r.open.fh);
}

t.test('a listing read in pieces while the directory changes repeats nothing and skips nothing that stayed', async (t) => {
  const f = await fixture(1, ([l0], upper) => {
    for (let i = 0; i < 50; i++) put(l0 as string, `d/f${i}`);
    for (let i = 40; i < 60; i++) put(upper, `d/f${i}`);
  });
  t.teardown(() => f.cleanup());
  const d = walk(f.ov, 'd');
  const removed = new Set(['f3', 'f41', 'f55', 'f20']);
  const got = await readInPieces(f.ov, d, 5, async (piece) => {
    if (piece === 1) for (const n of removed) await f.ov.unlink(ctx, d, n);
    if (piece === 1) for (const n of names('new', 0, 10)) await touch(f.ov, d, n);
    // another reader starts over (rewinddir): the listing kept is made anew meanwhile
    if (piece === 3) await readInPieces(f.ov, d, 1000);
  });
  t.same(got.slice(0, 2), ['.', '..']);
  t.equal(new Set(got).size, got.length, 'no name twice');
  for (const n of names('f', 0, 60)) if (!removed.has(n)) t.ok(got.includes(n), `${n} (stayed) listed`);
  const again = (await readInPieces(f.ov, d, 7)).filter((n) => n !== '.' && n !== '..');
  t.same(again.sort(), [...names('f', 0, 60).filter((n) => !removed.has(n)), ...names('new', 0, 10)].sort(), 'offset 0 sees every change');
});

t.test('two readers of one directory without handles, interleaved, each see every name once', async (t) => {
  const f = await fixture(1, ([l0], upper) => {
    for (let i = 0; i < 300; i++) put(i % 2 ? (l0 as string) : upper, `big/n${i}`);
  });
  t.teardown(() => f.cleanup());
  const d = walk(f.ov, 'big');
  const a: string[] = [];
  const b: string[] = [];
  let offA = 0;
  let offB = 0;
  for (let doneA = false, doneB = false, i = 0; !(doneA && doneB); i++) {
    if (!doneA) {
      const ents = f.ov.readdir(0, offA, d).slice(0, 13);
      doneA = ents.length === 0;
      for (const e of ents) a.push(e.name);
      if (!doneA) offA = (ents[ents.length - 1] as DirEntryOut).nextOffset;
    }
    if (!doneB) {
      // the second reader starts later and rewinds once (offset 0 makes the listing anew)
      if (i === 5) offB = 0;
      const ents = i < 3 ? [] : f.ov.readdir(0, offB, d).slice(0, 29);
      if (i >= 3 && ents.length === 0) doneB = true;
      if (i === 5) b.length = 0;
      for (const e of ents) b.push(e.name);
      if (ents.length > 0) offB = (ents[ents.length - 1] as DirEntryOut).nextOffset;
    }
    if (i === 8) await touch(f.ov, d, 'late');
  }
  for (const [who, got] of [['a', a], ['b', b]] as const) {
    t.equal(new Set(got).size, got.length, `${who}: no name twice`);
    t.equal(got.filter((n) => n.startsWith('n')).length, 300, `${who}: every name that stayed`);
  }
});

t.test('a listing continued from a cookie after its kept copy is gone gives the rest', async (t) => {
  const f = await fixture(1, ([l0]) => {
    for (let i = 0; i < 40; i++) put(l0 as string, `d/f${i}`);
    for (let i = 0; i < LISTINGS_KEPT + 2; i++) put(l0 as string, `other${i}/x`);
  });
  t.teardown(() => f.cleanup());
  const d = walk(f.ov, 'd');
  const st = stateOf(f.ov);
  const got = await readInPieces(f.ov, d, 9, async (piece) => {
    if (piece !== 0) return;
    await f.ov.unlink(ctx, d, 'f7');
    // other directories read in part push this one's listing out
    for (let i = 0; i < LISTINGS_KEPT + 2; i++) f.ov.readdir(0, 0, walk(f.ov, `other${i}`));
    t.equal(st.listings.get(st.node(d)), undefined, 'the listing was pushed out');
  });
  t.equal(new Set(got).size, got.length, 'no name twice');
  for (const n of names('f', 0, 40)) if (n !== 'f7') t.ok(got.includes(n), `${n} listed`);
  t.ok(st.listings.size <= LISTINGS_KEPT, `at most ${LISTINGS_KEPT} listings kept (${st.listings.size})`);
});

t.test('the kept listing goes at its end and with its node; fsyncdir and a removed directory work without a handle', async (t) => {
  const f = await fixture(1, ([l0], upper) => {
    put(l0 as string, 'd/a');
    put(upper, 'd/b');
    put(upper, 'gone/x');
    fs.unlinkSync(`${upper}/gone/x`);
  });
  t.teardown(() => f.cleanup());
  const st = stateOf(f.ov);
  const d = walk(f.ov, 'd');
  const node = st.node(d);
  const first = f.ov.readdir(0, 0, d);
  t.same(first.map((e) => e.name).slice(0, 2), ['.', '..']);
  t.ok(st.listings.get(node), 'kept while read');
  t.same(f.ov.readdir(0, (first[first.length - 1] as DirEntryOut).nextOffset, d), [], 'end');
  t.equal(st.listings.get(node), undefined, 'dropped at its end');
  f.ov.readdir(0, 0, d);
  t.ok(st.listings.get(node));
  f.ov.forget(d, 1);
  t.equal(st.inodes.get(d), undefined, 'node forgotten');
  t.equal(st.listings.get(node), undefined, 'its listing with it');

  await f.ov.fsyncdir(0, false, walk(f.ov, 'd'));
  t.pass('fsyncdir without a handle');
  t.throws(() => f.ov.readdir(0, 0, walk(f.ov, 'd/a')), withErrno(constants.errno.ENOTDIR), 'a file is no directory');

  const g = walk(f.ov, 'gone');
  f.ov.getattr(ctx, g);
  await f.ov.rmdir(ctx, 1, 'gone');
  t.same(f.ov.readdir(0, 0, g).map((e) => e.name), ['.', '..'], 'a removed directory lists nothing');
  t.equal(f.ov.getattr(ctx, g).nlink, 0, 'and answers fstat with no links (no handle counted)');
});

t.test('cookies: a name keeps its cookie whatever else the directory holds', async (t) => {
  const e = (name: string): DirEntryOut => ({ name, ino: 1n, type: 0, nextOffset: 0 });
  const node = {} as Node;
  const collisions = new WeakMap();
  const all = names('x', 0, 1000).map(e);
  assignCookies(all, node, collisions);
  const cookie = new Map(all.map((x) => [x.name, x.nextOffset]));
  t.ok(all.every((x, i) => i === 0 || x.nextOffset > (all[i - 1] as DirEntryOut).nextOffset), 'ascending, no two alike');
  t.ok(all.every((x) => x.nextOffset > 2 && Number.isSafeInteger(x.nextOffset + 1000)), 'above . and .., exact as a double');
  const some = all.filter((_, i) => i % 3 === 0).map((x) => e(x.name)).concat(names('y', 0, 50).map(e));
  assignCookies(some, node, collisions);
  t.ok(some.every((x) => !x.name.startsWith('x') || cookie.get(x.name) === x.nextOffset), 'same cookies after removals and additions');
  t.equal(nameCookie('x1'), cookie.get('x1'));
  t.equal(firstAfter(all, 0), 0);
  t.equal(firstAfter(all, (all[10] as DirEntryOut).nextOffset), 11);
  t.equal(firstAfter(all, Number.MAX_SAFE_INTEGER), all.length);

  // a collision (forced: one name's cookie moved by an earlier one) is remembered for the node
  const moved = new WeakMap([[node, new Map([['x5', nameCookie('x6')]])]]);
  const pair = [e('x5'), e('x6')];
  assignCookies(pair, node, moved);
  const [p0, p1] = pair as [DirEntryOut, DirEntryOut];
  t.ok(p0.nextOffset < p1.nextOffset, 'two names never share a cookie');
  const kept = new Map(pair.map((x) => [x.name, x.nextOffset]));
  const again = [e('x6'), e('x5')];
  assignCookies(again, node, moved);
  t.same(new Map(again.map((x) => [x.name, x.nextOffset])), kept, 'the moved cookie stays');

  const store = new ListingStore();
  const nodes = Array.from({ length: LISTINGS_KEPT + 5 }, () => ({}) as Node);
  for (const n of nodes) store.set(n, [e('a')]);
  t.equal(store.size, LISTINGS_KEPT, 'bounded');
  t.equal(store.get(nodes[0] as Node), undefined, 'the oldest go first');
  t.ok(store.get(nodes[nodes.length - 1] as Node));
});
