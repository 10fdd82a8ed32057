/**
 * A lower node's GETATTR takes its statx through the slot of the lower attribute cache
 * the node keeps (State.lowerStat, src/overlay/lower-pool.ts StatSlot): no cache key
 * built and looked up per call. A slot the cache lets go (evicted, replaced, its lower
 * dropped with the last mount) is emptied, so a node never answers from one and never
 * keeps a statx alive past the cache's bounds; it asks the cache again.
 */
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Overlay } from '../../../src/overlay';
import type { State } from '../../../src/overlay/state';
import { lowerPool } from '../../../src/overlay/lower-pool';
import { ctx, fixture, put, walk } from './fixtures/helpers';

const stateOf = (ov: Overlay): State => (ov as unknown as { st: State }).st;

/** lookups in the shared lower attribute cache while `f` runs */
function cacheGets(f: () => void): number {
  const lru = lowerPool.stats as unknown as { get: (...a: unknown[]) => unknown };
  const real = lru.get;
  let gets = 0;
  lru.get = function get(this: unknown, ...a: unknown[]) {
    gets++;
    return real.apply(this, a);
  };
  try {
    f();
  } finally {
    lru.get = real;
  }
  return gets;
}

t.test('a GETATTR of a lower node looks nothing up in the attribute cache after the first', async (t) => {
  const f = await fixture(2, ([l0, l1]) => {
    put(l0 as string, 'd/a', 'top');
    put(l1 as string, 'd/b', 'bottom b');
  });
  t.teardown(() => f.cleanup());
  const a = walk(f.ov, 'd/a');
  const b = walk(f.ov, 'd/b');
  const d = walk(f.ov, 'd');
  t.equal(f.ov.getattr(ctx, a).size, 3);
  t.equal(f.ov.getattr(ctx, b).size, 8);
  f.ov.getattr(ctx, d);
  const gets = cacheGets(() => {
    for (let i = 0; i < 100; i++) {
      t.equal(f.ov.getattr(ctx, a).size, 3);
      t.equal(f.ov.getattr(ctx, b).size, 8);
      f.ov.getattr(ctx, d);
    }
  });
  t.equal(gets, 0, 'no cache lookups for 300 GETATTRs of known lower nodes');
  // copied up: the upper is statx'ed, not the slot
  await f.ov.setattr(ctx, a, { mode: 0o600 });
  fs.writeFileSync(path.join(f.upper, 'd/a'), 'changed in the upper');
  t.equal(f.ov.getattr(ctx, a).size, 20, 'after copy-up the upper answers');
});

t.test('a slot the cache lets go is emptied, and the node asks again', async (t) => {
  const f = await fixture(1, ([l0]) => {
    for (let i = 0; i < 8; i++) put(l0 as string, `d/f${i}`, 'x'.repeat(i + 1));
  }, false, { caches: { stats: 3 } });
  t.teardown(() => f.cleanup());
  const st = stateOf(f.ov);
  const ids = Array.from({ length: 8 }, (_, i) => walk(f.ov, `d/f${i}`));
  for (const [i, id] of ids.entries()) t.equal(f.ov.getattr(ctx, id).size, i + 1);
  // only 3 stats fit: the first nodes' slots were evicted and emptied
  const first = st.node(ids[0] as number);
  t.not(first.lowerSlot, null, 'the node kept its slot');
  t.equal(first.lowerSlot?.s, undefined, 'evicted: emptied, no statx kept beyond the bound');
  const last = st.node(ids[7] as number);
  t.equal(last.lowerSlot?.s?.size, 8, 'a slot still in the cache holds its statx');
  t.ok(f.ov.cacheSizes.stats <= 3, 'the bound holds');
  // asked again: the same answers, read anew
  for (let round = 0; round < 2; round++) {
    for (const [i, id] of ids.entries()) t.equal(f.ov.getattr(ctx, id).size, i + 1, `f${i} round ${round}`);
  }
  t.ok(f.ov.cacheSizes.stats <= 3);
  // the same object written behind the mount: an evicted slot is read again from the layer
  fs.writeFileSync(path.join(f.lowers[0] as string, 'd/f0'), 'behind');
  for (const id of ids.slice(1, 6)) f.ov.getattr(ctx, id);
  t.equal(st.node(ids[0] as number).lowerSlot?.s, undefined, 'f0 evicted again');
  t.equal(f.ov.getattr(ctx, ids[0] as number).size, 6, 'so its next GETATTR reads the layer');
});

t.test('a second mount of the same lowers, and the last mount gone: the slots of the shared cache', async (t) => {
  const f = await fixture(1, ([l0]) => put(l0 as string, 'd/f', 'shared'));
  t.teardown(() => f.cleanup());
  const other = await Overlay.open({ lowerdirs: f.lowers, xattrPrefix: 'trusted.overlay.', volatile: false });
  const a = walk(f.ov, 'd/f');
  const b = walk(other, 'd/f');
  t.equal(f.ov.getattr(ctx, a).size, 6);
  t.equal(other.getattr(ctx, b).size, 6);
  t.equal(stateOf(f.ov).node(a).lowerSlot, stateOf(other).node(b).lowerSlot, 'one slot for both mounts\' nodes');
  other.destroy();
  t.equal(f.ov.getattr(ctx, a).size, 6, 'the other mount gone: still kept for this one');
  t.not(stateOf(f.ov).node(a).lowerSlot?.s, undefined);
});
