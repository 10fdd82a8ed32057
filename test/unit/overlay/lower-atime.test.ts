/**
 * Where the daemon cannot clone the layers' mounts (no CAP_SYS_ADMIN: a rootless
 * daemon), a lower is not behind a private noatime mount: the daemon's own opens must
 * leave its atimes, as kernel overlayfs opens the real files and directories it reads
 * O_NOATIME. Here the overlay is loaded with the tree clone refused (layers/tree.ts
 * answering null), then a lower file is read, lower directories listed and read ahead
 * (READDIRPLUS read-ahead on the thread pool, native batch.c), on a mount that is not
 * noatime; the lower's atimes, set before their mtimes (so relatime would move them),
 * must stay. The differential test test/differential/lower-atime.test.ts covers the
 * whole mount as root, passthrough included.
 */
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { DirEntryOut } from '../../../src/fuse/api';
import type * as OverlayModule from '../../../src/overlay';
import { config, ctx, readdirAll, tmp, walk } from './fixtures/helpers';

const PAST = new Date('2020-01-01T00:00:00Z');
const LATER = new Date('2021-01-01T00:00:00Z');
const ENTRIES = ['', 'd', 'd/sub', 'd/f', 'd/sub/g', 'top'];

function atimes(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const p of ENTRIES) out[p || '.'] = fs.statSync(path.join(root, p), { bigint: true }).atimeNs.toString();
  return out;
}

t.test('without a private noatime clone, reads and listings leave the lower\'s atimes', async (t) => {
  const { Overlay } = t.mockRequire<typeof OverlayModule>('../../../src/overlay', {
    '../../../src/layers/tree': { openLayerTree: () => null, treeClonesAllowed: () => false },
  });
  const dir = tmp();
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const [lower, upper, work] = ['l0', 'upper', 'work'].map((d) => path.join(dir, d)) as [string, string, string];
  for (const d of [lower, upper, work]) fs.mkdirSync(d);
  fs.mkdirSync(path.join(lower, 'd/sub'), { recursive: true });
  fs.writeFileSync(path.join(lower, 'd/f'), 'f');
  fs.writeFileSync(path.join(lower, 'd/sub/g'), 'g');
  fs.writeFileSync(path.join(lower, 'top'), 'top data');
  for (const p of ENTRIES) fs.utimesSync(path.join(lower, p), PAST, LATER);
  const before = atimes(lower);

  // relatime: only the O_NOATIME of our opens keeps the atimes
  const ov = await Overlay.open(config([lower], upper, work, { noatime: false }));
  t.teardown(() => ov.destroy());
  const listing = (p: string): DirEntryOut[] => {
    const { fh } = ov.opendir(ctx, walk(ov, p));
    try {
      return readdirAll(ov, fh);
    } finally {
      ov.releasedir(fh);
    }
  };
  t.same(listing('').map((e) => e.name).sort(), ['.', '..', 'd', 'top']);
  const entries = listing('d');
  t.same(entries.map((e) => e.name).sort(), ['.', '..', 'f', 'sub']);
  const ahead = ov.prefetchLookups(walk(ov, 'd'), entries);
  t.ok(ahead instanceof Promise, 'the read-ahead lists d/sub on the thread pool');
  await ahead;
  for (const [p, want] of [['top', 'top data'], ['d/f', 'f'], ['d/sub/g', 'g']]) {
    const { fh } = await ov.open(ctx, walk(ov, p as string), fs.constants.O_RDONLY);
    t.equal((await ov.read(fh, 0, 100)).toString(), want, `${p} read`);
    ov.release(fh);
  }
  t.same(atimes(lower), before, 'the lower\'s atimes are unchanged');
});
