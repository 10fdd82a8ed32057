import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { copyUpPaths, INLINE_COPY_MAX } from '../../../src/overlay/copyup';
import { openStates } from '../../../src/overlay/state';
import type { OpenResult } from '../../../src/fuse/api';
import type { Overlay } from '../../../src/overlay';
import { ctx, fixture, walk } from './fixtures/helpers';

const O = fs.constants;
const APPEND = O.O_WRONLY | O.O_APPEND;

// Its own process: whether a copy runs on the JS thread depends on how many overlays it has open.
t.test('an open whose copy-up runs whole on the JS thread is answered without a promise', async (t) => {
  const fill = ([l0]: string[]): void => {
    const l = l0 as string;
    for (const n of ['a', 'b', 'c']) fs.writeFileSync(path.join(l, n), `small ${n}`);
    fs.mkdirSync(path.join(l, 'd'));
    fs.writeFileSync(path.join(l, 'd', 'e'), 'small e');
    fs.writeFileSync(path.join(l, 'big'), Buffer.alloc(INLINE_COPY_MAX + 1, 7));
  };
  const f = await fixture(1, fill);
  t.teardown(() => f.cleanup());
  t.equal(openStates(), 1);

  // opens `name` for appending and writes `add` through the handle's fd
  const append = async (ov: Overlay, name: string, add: string): Promise<{ promise: boolean; onThread: number; onPool: number }> => {
    const before = { ...copyUpPaths };
    const r = ov.open(ctx, walk(ov, name), APPEND);
    const promise = r instanceof Promise;
    const { fh } = await r as OpenResult;
    await ov.write(fh, 0, Buffer.from(add));
    ov.release(fh);
    return { promise, onThread: copyUpPaths.onThread - before.onThread, onPool: copyUpPaths.onPool - before.onPool };
  };

  t.same(await append(f.ov, 'a', '+1'), { promise: false, onThread: 1, onPool: 0 }, 'small file, parent in the upper: no promise');
  t.same(await append(f.ov, 'a', '+2'), { promise: false, onThread: 0, onPool: 0 }, 'in the upper already: no promise');
  t.same(await append(f.ov, 'd/e', '+1'), { promise: true, onThread: 1, onPool: 0 }, 'its parent only in a lower: copied up first, through a promise');
  t.same(await append(f.ov, 'big', 'x'), { promise: true, onThread: 0, onPool: 1 }, 'larger than INLINE_COPY_MAX: on the thread pool');
  t.equal(fs.readFileSync(path.join(f.upper, 'a'), 'utf8'), 'small a+1+2');
  t.equal(fs.readFileSync(path.join(f.upper, 'd', 'e'), 'utf8'), 'small e+1');
  t.equal(fs.statSync(path.join(f.upper, 'big')).size, INLINE_COPY_MAX + 2);
  t.same(fs.readdirSync(path.join(f.work, 'work')), [], 'nothing left in the work dir');

  // beside another mount the fsync must not hold up its requests: the pool, through a promise
  const other = await fixture(1, fill);
  t.teardown(() => other.cleanup());
  t.same(await append(f.ov, 'b', '+1'), { promise: true, onThread: 0, onPool: 1 }, 'beside another mount: on the thread pool');
  other.cleanup();
  t.same(await append(f.ov, 'c', '+1'), { promise: false, onThread: 1, onPool: 0 }, 'alone again: no promise');
  t.equal(fs.readFileSync(path.join(f.upper, 'b'), 'utf8'), 'small b+1');
  t.equal(fs.readFileSync(path.join(f.upper, 'c'), 'utf8'), 'small c+1');
  t.equal(fs.readFileSync(path.join(f.lowers[0] as string, 'c'), 'utf8'), 'small c', 'the lower untouched');
});
