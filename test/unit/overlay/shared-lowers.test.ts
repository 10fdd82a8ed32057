/**
 * The lower caches shared by the mounts of one process (src/overlay/lower-pool.ts): two
 * mounts of the same lowers read each lower directory and object once between them;
 * each mount still shows ids through its own uid/gid mapping; the same directory given
 * by another path is cached apart; what a lower's mounts kept is dropped with the last
 * of them, and the bounds shrink with each mount that closes.
 *
 * As in cache.test.ts, lowers are changed behind the mounts on purpose, to see what is
 * answered from memory: a lower must not change while mounted.
 */
import t, { type Test } from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Overlay } from '../../../src/overlay';
import { lowerIdentities, lowerPool } from '../../../src/overlay/lower-pool';
import type { Layer } from '../../../src/layers/access';
import { C, native } from '../../../src/native';
import { apart, config, ctx, fixture, ls, put, tmp, walk } from './fixtures/helpers';

/** a second writable mount of `lowers`, with its own upper and work dirs */
async function second(t: Test, lowers: string[], extra: Parameters<typeof config>[3] = {}): Promise<Overlay> {
  const dir = tmp();
  fs.mkdirSync(path.join(dir, 'upper'));
  fs.mkdirSync(path.join(dir, 'work'));
  const ov = await Overlay.open(config(lowers, path.join(dir, 'upper'), path.join(dir, 'work'), extra));
  t.teardown(() => {
    ov.destroy();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return ov;
}

function twoLowers([l0, l1]: string[]): void {
  put(l0 as string, 'd/a', 'a');
  put(l1 as string, 'd/b', 'bb');
  put(l1 as string, 'e/f', 'fff');
}

t.test('two mounts of the same lowers see the same data, read once between them', async (t) => {
  const f = await fixture(2, twoLowers);
  t.teardown(() => f.cleanup());
  t.same(ls(f.ov, 'd'), ['a', 'b']);
  t.same(ls(f.ov, 'e'), ['f']);
  const sizeA = f.ov.getattr(ctx, walk(f.ov, 'd/b')).size;
  const modeA = f.ov.getattr(ctx, walk(f.ov, 'e/f')).mode;
  const before = f.ov.cacheSizes;
  // behind both mounts: the second one answers from what the first read
  put(f.lowers[1] as string, 'd/behind', 'x');
  fs.chmodSync(path.join(f.lowers[1] as string, 'e/f'), 0o600);
  const b = await second(t, f.lowers);
  t.same(ls(b, 'd'), ['a', 'b'], 'the listing the first mount read');
  t.same(ls(b, 'e'), ['f']);
  t.equal(b.lookup(ctx, walk(b, 'd'), 'behind'), null, 'a name the shared listing lacks is not looked for');
  t.equal(b.getattr(ctx, walk(b, 'd/b')).size, sizeA);
  t.equal(b.getattr(ctx, walk(b, 'e/f')).mode, modeA, 'the attributes the first mount read');
  t.same(b.cacheSizes, before, 'nothing more kept for the second mount');
  // each mount's upper stays its own
  await b.mkdir(ctx, walk(b, 'd'), 'mine', 0o755);
  t.same(ls(b, 'd'), ['a', 'b', 'mine']);
  t.same(ls(f.ov, 'd'), ['a', 'b'], 'the other mount does not see the second one\'s upper');
});

t.test('a mount with an id mapping shows its own ids of the shared attributes', async (t) => {
  const f = await fixture(1, ([l0]) => {
    put(l0 as string, 'owned', 'o');
    fs.chownSync(path.join(l0 as string, 'owned'), 100100, 100200);
  });
  t.teardown(() => f.cleanup());
  const owners = (ov: Overlay): [number, number] => {
    const a = ov.getattr(ctx, walk(ov, 'owned'));
    return [a.uid, a.gid];
  };
  const mapping = {
    uidMap: [{ inside: 0, host: 100000, count: 65536 }],
    gidMap: [{ inside: 0, host: 100000, count: 65536 }],
  };
  // the mapped mount reads the attributes first, the plain one after it, and back
  const mapped = await second(t, f.lowers, mapping);
  t.same(owners(mapped), [100, 200], 'the mapped mount shows the ids inside its mapping');
  t.same(owners(f.ov), [100100, 100200], 'the plain mount shows the ids on disk');
  const mapped2 = await second(t, f.lowers, { uidMap: [{ inside: 1000, host: 100100, count: 1 }], gidMap: mapping.gidMap });
  t.same(owners(mapped2), [1000, 200], 'another mapping, its own ids');
  t.same(owners(mapped), [100, 200], 'the first mapped mount unchanged');
  const squashed = await second(t, f.lowers, { squashToUid: 7, squashToGid: 8 });
  t.same(owners(squashed), [7, 8]);
  t.same(owners(f.ov), [100100, 100200], 'the plain mount unchanged');
  t.same(owners(mapped2), [1000, 200]);
});

t.test('the same directory given by another path is cached apart', async (t) => {
  const f = await fixture(1, ([l0]) => put(l0 as string, 'd/a', 'a'));
  t.teardown(() => f.cleanup());
  t.same(ls(f.ov, 'd'), ['a']);
  put(f.lowers[0] as string, 'd/later', 'l');
  const other = await second(t, apart(f.lowers));
  t.same(ls(other, 'd'), ['a', 'later'], 'read from the disk, not from the first mount\'s listing');
  const same = await second(t, f.lowers);
  t.same(ls(same, 'd'), ['a'], 'the same path: the first mount\'s listing');
});

t.test('a lower\'s shared caches are dropped when its last mount closes', async (t) => {
  const f = await fixture(2, twoLowers);
  t.teardown(() => fs.rmSync(f.dir, { recursive: true, force: true })); // f.ov destroyed below
  const lowersBefore = lowerPool.lowerCount;
  t.same(ls(f.ov, 'd'), ['a', 'b']);
  walk(f.ov, 'e/f');
  const b = await Overlay.open(config(f.lowers));
  t.same(ls(b, 'd'), ['a', 'b']);
  t.equal(lowerPool.lowerCount, lowersBefore, 'both mounts use the same two lowers');
  put(f.lowers[0] as string, 'd/behind', 'x');
  f.ov.destroy();
  const kept = b.cacheSizes;
  t.ok(kept.listings > 0 && kept.stats > 0, 'kept while one mount of the lowers is left');
  t.same(ls(b, 'd'), ['a', 'b'], 'still the shared listing');
  b.destroy();
  t.same(b.cacheSizes, { listings: 0, listingBytes: 0, stats: 0, statBytes: 0 }, 'nothing kept after the last close');
  t.equal(lowerPool.lowerCount, lowersBefore - 2, 'the lowers are forgotten');
  const c = await Overlay.open(config(f.lowers));
  t.teardown(() => c.destroy());
  t.same(ls(c, 'd'), ['a', 'b', 'behind'], 'a mount after that reads the lowers afresh');
});

t.test('the bounds are the sum of the attached mounts\' and shrink when one closes', async (t) => {
  const caches = { listings: 3, stats: 4 };
  const f = await fixture(1, ([l0]) => {
    for (let i = 0; i < 8; i++) put(l0 as string, `d${i}/f${i}`, 'x');
  }, true, { caches });
  t.teardown(() => fs.rmSync(f.dir, { recursive: true, force: true })); // f.ov destroyed below
  const b = await Overlay.open(config(f.lowers, undefined, undefined, { caches }));
  t.teardown(() => b.destroy());
  for (let i = 0; i < 8; i++) {
    t.same(ls(i % 2 === 0 ? f.ov : b, `d${i}`), [`f${i}`]);
    walk(i % 2 === 0 ? b : f.ov, `d${i}/f${i}`);
  }
  const two = b.cacheSizes;
  t.ok(two.listings > 3 && two.listings <= 6, `two mounts: listings within 2 x 3 (${two.listings})`);
  t.ok(two.stats > 4 && two.stats <= 8, `two mounts: stats within 2 x 4 (${two.stats})`);
  f.ov.destroy();
  const one = b.cacheSizes;
  t.ok(one.listings > 0 && one.listings <= 3, `one mount left: listings within 3 (${one.listings})`);
  t.ok(one.stats > 0 && one.stats <= 4, `one mount left: stats within 4 (${one.stats})`);
  for (let i = 0; i < 8; i++) t.same(ls(b, `d${i}`), [`f${i}`], 'evicted entries are read again');
});

t.test('a lower on an idmapped mount is named apart for each mount', async (t) => {
  const dir = tmp();
  const fd = native.openat(C.AT_FDCWD, dir, C.O_PATH | C.O_DIRECTORY | C.O_CLOEXEC, 0);
  t.teardown(() => {
    native.close(fd);
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const layer = (p: string, idShifted: boolean): Layer => ({ index: 1, path: p, rootFd: fd, devMajor: 0, devMinor: 0, upper: false, idShifted });
  const name = (p: string, idShifted: boolean): string | undefined => lowerIdentities([layer(p, idShifted)])[1];
  t.equal(name(dir, false), name(dir, false), 'a plain lower: one name for every mount given its path');
  t.not(name(`${dir}/.`, false), name(dir, false), 'another path, another name');
  // what the mount takes for a lower on an idmapped mount (overlay/idmap.ts onIdmappedMount)
  const shifted = name(dir, true);
  t.not(shifted, name(dir, true), 'idmapped: a name of its own each time');
  t.not(shifted, name(dir, false));
});
