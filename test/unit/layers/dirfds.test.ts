// The layer directory-fd cache (src/layers/access.ts DirFds): entries left unused are closed by
// the sweep, entries in use stay, the timer does it on its own and stops when empty.
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DirFds, type Layer } from '../../../src/layers/access';
import { C, native } from '../../../src/native';
import { tempDir, type Teardown } from '../../lib/tmp';

/** A layer with directories a, a/x, b and c. */
async function layerDir(t: Teardown): Promise<{ root: string; layer: Layer }> {
  const root = await tempDir(t, 'dirfds');
  for (const d of ['a/x', 'b', 'c']) fs.mkdirSync(path.join(root, d), { recursive: true });
  const rootFd = native.openat(C.AT_FDCWD, root, C.O_PATH | C.O_DIRECTORY | C.O_CLOEXEC, 0);
  t.teardown(() => native.close(rootFd));
  return { root, layer: { index: 0, path: root, rootFd, devMajor: 0, devMinor: 0, upper: false } };
}

/** What fd stands for now ('' when it is not open). */
function target(fd: number): string {
  try {
    return fs.readlinkSync(`/proc/self/fd/${fd}`);
  } catch {
    return '';
  }
}

t.test('a sweep closes the entries not used for more than two ticks, keeps the others', async (t) => {
  const { root, layer } = await layerDir(t);
  const dirs = new DirFds(64, { idleMs: 0 }); // no timer: the test sweeps by hand
  t.teardown(() => dirs.clear());
  const fd = Object.fromEntries(['a', 'a/x', 'b', 'c'].map((p) => [p, dirs.get(layer, p)]));
  for (const [p, n] of Object.entries(fd)) t.equal(target(n), path.join(root, p), `${p} open`);
  t.equal(dirs.size, 4);
  t.equal(dirs.get(layer, ''), layer.rootFd, 'the root is the layer fd, not cached');
  t.equal(dirs.size, 4);

  t.equal(dirs.sweep(), 0, 'tick 1: nothing idle long enough');
  t.equal(dirs.get(layer, 'a'), fd.a, 'a hit returns the cached fd');
  t.equal(dirs.sweep(), 0, 'tick 2: nothing closed yet');
  t.equal(dirs.sweep(), 3, 'tick 3: the three entries last used at tick 0 are closed');
  t.equal(dirs.size, 1);
  t.equal(target(fd.a as number), path.join(root, 'a'), 'a (used at tick 1) is still open');
  for (const p of ['a/x', 'b', 'c']) t.not(target(fd[p] as number), path.join(root, p), `${p} closed`);

  const b = dirs.get(layer, 'b');
  t.equal(target(b), path.join(root, 'b'), 'a closed entry opens again on the next get');
  t.equal(dirs.size, 2);
  t.equal(dirs.sweep(), 1, 'tick 4: a goes');
  t.equal(target(b), path.join(root, 'b'), 'b, used at tick 3, stays');
  t.equal(dirs.sweep(), 0);
  t.equal(dirs.sweep(), 1, 'tick 6: b goes');
  t.equal(dirs.size, 0);
  t.equal(target(b), '', 'nothing left open');
});

t.test('expiry and invalidation keep the ancestor index consistent', async (t) => {
  const { root, layer } = await layerDir(t);
  const dirs = new DirFds(64, { idleMs: 0 });
  t.teardown(() => dirs.clear());
  const x = dirs.get(layer, 'a/x');
  dirs.get(layer, 'a');
  for (let i = 0; i < 3; i++) dirs.sweep();
  t.equal(dirs.size, 0, 'both expired');
  t.equal(target(x), '');
  const x2 = dirs.get(layer, 'a/x');
  t.equal(target(x2), path.join(root, 'a/x'));
  dirs.invalidate(layer, 'a');
  t.equal(dirs.size, 0, 'invalidating a drops a/x cached after the expiry');
  t.equal(target(x2), '');
  const c = dirs.get(layer, 'c');
  dirs.clear();
  t.equal(target(c), '', 'clear closes');
});

t.test('the timer sweeps an idle cache empty and stops', async (t) => {
  const { layer } = await layerDir(t);
  const dirs = new DirFds(64, { idleMs: 20 });
  t.teardown(() => dirs.clear());
  const fds = ['a', 'b', 'c'].map((p) => dirs.get(layer, p));
  const timer = (): unknown => (dirs as unknown as { timer: unknown }).timer;
  t.not(timer(), undefined, 'a miss starts the sweep timer');
  for (let i = 0; i < 500 && dirs.size > 0; i++) await new Promise((r) => setTimeout(r, 10));
  t.equal(dirs.size, 0, 'all entries closed without any call');
  for (const fd of fds) t.equal(target(fd), '');
  t.equal(timer(), undefined, 'the timer stopped with the cache empty');
  dirs.get(layer, 'a');
  t.not(timer(), undefined, 'and starts again on the next miss');
});

t.test('idleMs 0 keeps entries until evicted (LRU bound)', async (t) => {
  const { root, layer } = await layerDir(t);
  const dirs = new DirFds(2, { idleMs: 0 });
  t.teardown(() => dirs.clear());
  const a = dirs.get(layer, 'a');
  dirs.get(layer, 'b');
  t.equal((dirs as unknown as { timer: unknown }).timer, undefined, 'no timer');
  dirs.get(layer, 'c');
  t.equal(dirs.size, 2);
  t.not(target(a), path.join(root, 'a'), 'the least recently used entry was evicted and closed');
});
