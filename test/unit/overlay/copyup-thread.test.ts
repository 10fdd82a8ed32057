import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { copyUpPaths } from '../../../src/overlay/copyup';
import { openStates } from '../../../src/overlay/state';
import type { Overlay } from '../../../src/overlay';
import { ctx, fixture, walk } from './fixtures/helpers';

const O = fs.constants;

// Its own process: the choice depends on how many overlays the process has open.
t.test('a small copy-up runs on the JS thread only where its fsync holds up no other mount', async (t) => {
  const fill = ([l0]: string[]): void => {
    for (const n of ['a', 'b', 'c', 'd']) fs.writeFileSync(path.join(l0 as string, n), `small ${n}`);
  };
  // an append: copies the file up with its data
  const paths = async (ov: Overlay, name: string): Promise<{ onThread: number; onPool: number }> => {
    const before = { ...copyUpPaths };
    const { fh } = await ov.open(ctx, walk(ov, name), O.O_WRONLY | O.O_APPEND);
    ov.release(fh);
    return { onThread: copyUpPaths.onThread - before.onThread, onPool: copyUpPaths.onPool - before.onPool };
  };
  const f = await fixture(1, fill);
  t.teardown(() => f.cleanup());
  t.equal(openStates(), 1);
  t.same(await paths(f.ov, 'a'), { onThread: 1, onPool: 0 }, 'the only mount of the process: on the JS thread');

  // a second mount in the process (a shared daemon): an fsync on the JS thread would stall it
  const other = await fixture(1, fill);
  const loose = await fixture(1, fill, false, { volatile: true });
  t.equal(openStates(), 3);
  t.same(await paths(f.ov, 'b'), { onThread: 0, onPool: 1 }, 'beside other mounts: on the thread pool');
  t.same(await paths(other.ov, 'a'), { onThread: 0, onPool: 1 }, 'the other mount too');
  t.same(await paths(loose.ov, 'a'), { onThread: 1, onPool: 0 }, 'volatile (no fsync): on the JS thread');

  other.cleanup();
  loose.cleanup();
  t.equal(openStates(), 1);
  t.same(await paths(f.ov, 'c'), { onThread: 1, onPool: 0 }, 'alone again: on the JS thread');
  for (const n of ['a', 'b', 'c']) t.equal(fs.readFileSync(path.join(f.upper, n), 'utf8'), `small ${n}`, `${n} copied`);
  f.ov.destroy();
  f.ov.destroy();
  t.equal(openStates(), 0, 'a second destroy counts once');
});
