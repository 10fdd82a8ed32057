// OpenResult.backingKey (src/overlay/files.ts): the bridge reuses a node's passthrough
// backing id while the key stays the same, without a stat of the fd, so equal keys must
// mean the same real file and a copy-up must change the key. Checked against fstat of
// the handles' own fds, through copy-up, truncation, rename and metacopy.
import t, { type Test } from 'tap';
import { constants as fsc, fstatSync } from 'node:fs';
import type { OpenResult } from '../../../src/fuse/api';
import { ctx, fixture, put, walk } from './fixtures/helpers';

/** every pair of handles: same key exactly when their fds are the same file */
function sameFileIffSameKey(t: Test, opens: [string, OpenResult][]): void {
  const id = (r: OpenResult): string => {
    const st = fstatSync(r.backingFd as number);
    return `${st.dev}:${st.ino}`;
  };
  for (const [na, a] of opens) {
    for (const [nb, b] of opens) {
      if (na >= nb) continue;
      t.equal(a.backingKey === b.backingKey, id(a) === id(b), `${na} / ${nb}: keys ${a.backingKey}, ${b.backingKey}`);
    }
  }
}

t.test('a key names one real file: same for reads of it, new after copy-up', async (t) => {
  const f = await fixture(2, ([l0, l1]) => {
    put(l1 as string, 'd/file', 'lower data');
    put(l0 as string, 'd/other', 'other');
  });
  t.teardown(() => f.cleanup());
  const d = walk(f.ov, 'd');
  const file = f.ov.lookup(ctx, d, 'file');
  const other = f.ov.lookup(ctx, d, 'other');
  if (file === null || other === null) throw new Error('lower files not found');
  const opens: [string, OpenResult][] = [];
  const open = async (name: string, node: number, flags: number): Promise<OpenResult> => {
    const r = await f.ov.open(ctx, node, flags);
    t.type(r.backingKey, 'string', `${name}: a key`);
    opens.push([name, r]);
    return r;
  };
  const r1 = await open('1 lower read', file.nodeId, fsc.O_RDONLY);
  await open('2 lower read', file.nodeId, fsc.O_RDONLY | fsc.O_NONBLOCK);
  await open('3 other file', other.nodeId, fsc.O_RDONLY);
  const w = await open('4 write (copy-up)', file.nodeId, fsc.O_WRONLY);
  t.not(w.backingKey, r1.backingKey, 'the copy-up changes the key');
  await open('5 read of the upper copy', file.nodeId, fsc.O_RDONLY);
  await open('6 truncating open of the upper copy', file.nodeId, fsc.O_RDWR | fsc.O_TRUNC);
  await f.ov.rename(ctx, d, 'file', d, 'moved', { noReplace: false, exchange: false, whiteout: false });
  await open('7 read after a rename', file.nodeId, fsc.O_RDONLY);
  const c = await f.ov.create(ctx, d, 'new', 0o644, fsc.O_RDWR);
  opens.push(['8 created', c.open]);
  sameFileIffSameKey(t, opens);
  for (const [, r] of opens) f.ov.release(r.fh);
});

t.test('metacopy: the lower data file, then the upper copy once the data is copied up', async (t) => {
  const f = await fixture(1, ([l0]) => put(l0 as string, 'd/file', 'lower data'), false, { metacopy: true });
  t.teardown(() => f.cleanup());
  const d = walk(f.ov, 'd');
  const file = f.ov.lookup(ctx, d, 'file');
  if (file === null) throw new Error('lower file not found');
  await f.ov.setattr(ctx, file.nodeId, { mode: 0o600 });
  const opens: [string, OpenResult][] = [];
  opens.push(['1 metacopy read', await f.ov.open(ctx, file.nodeId, fsc.O_RDONLY)]);
  opens.push(['2 write (data copy-up)', await f.ov.open(ctx, file.nodeId, fsc.O_RDWR)]);
  opens.push(['3 read after', await f.ov.open(ctx, file.nodeId, fsc.O_RDONLY)]);
  t.not(opens[0]![1].backingKey, opens[2]![1].backingKey, 'the data copy-up changes the key');
  sameFileIffSameKey(t, opens);
  for (const [, r] of opens) f.ov.release(r.fh);
});
