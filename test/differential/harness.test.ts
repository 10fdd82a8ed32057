// The differential harness must be able to fail: kernel overlayfs against kernel
// overlayfs on layers that differ in known ways must report exactly those differences.
import t from 'tap';
import { appendFile, chmod, readdir, readlink, utimes } from 'node:fs/promises';
import { lstatSync } from 'node:fs';
import { join } from 'node:path';
import { agentSnapshot, type Op, type Outcome, type SnapshotEntry } from '../lib/agent';
import { buildFixtureLayers } from '../lib/layers';
import { tempDir } from '../lib/tmp';
import { type Difference } from './compare';
import { compareRuns, fixtureLayout, mountLayout, runOnTarget } from './harness';
import { TreeModel } from './model';
import { LINK_TARGETS } from './random';

const OPS: Op[] = [
  { op: 'read', path: 'play/f1' },
  { op: 'append', path: 'play/f1', data: 'more\n' },
  { op: 'stat', path: 'bin/hello' },
  { op: 'unlink', path: 'etc/motd' },
];

const key = (d: Difference): string => `${d.where} ${d.where === 'outcome' ? `#${d.opIndex}` : d.path} ${d.field}`;

t.test('differences in the layers are reported per op, in the merged view and in the upper', async (t) => {
  const dir = await tempDir(t, 'harness');
  const a = await fixtureLayout(join(dir, 'a'), {});
  const b = await fixtureLayout(join(dir, 'b'), {});
  // Deliberate differences in B's base layer: one file's content, one file's mode, one
  // file's mtime.
  await appendFile(join(b.lowers[2], 'play/f1'), 'tweak\n');
  await chmod(join(b.lowers[2], 'bin/hello'), 0o700);
  await utimes(join(b.lowers[2], 'etc/group'), 1_000_000_000, 1_000_000_000);

  const ra = await runOnTarget(t, 'kernel', a, OPS);
  const rb = await runOnTarget(t, 'kernel', b, OPS);
  const found = compareRuns(OPS, ra, rb).map(key).sort();
  t.same(
    found,
    [
      'merged bin/hello mode',
      'merged etc/group mtime',
      'merged play/f1 sha256',
      'merged play/f1 size',
      'outcome #0 outcome',
      'outcome #2 outcome',
      'upper play/f1 sha256',
      'upper play/f1 size',
    ],
    'exactly the planted differences',
  );
  t.ok(ra.upper?.entries['etc/motd']?.type.startsWith('whiteout'), 'the upper snapshot shows the whiteout');
});

t.test('equal layers and ops compare equal', async (t) => {
  const dir = await tempDir(t, 'harness');
  const a = await fixtureLayout(join(dir, 'a'), {});
  const b = await fixtureLayout(join(dir, 'b'), {});
  const ra = await runOnTarget(t, 'kernel', a, OPS);
  const rb = await runOnTarget(t, 'kernel', b, OPS);
  t.same(compareRuns(OPS, ra, rb), []);
});

t.test('a private overlay xattr in a merged view is reported as a leak', async (t) => {
  const dir = await tempDir(t, 'harness');
  const layers = await buildFixtureLayers(join(dir, 'layers'));
  // A raw layer read as if it were a merged view: its opaque marker is a leak.
  const snap = await agentSnapshot(layers.mid, 'merged');
  t.same(snap.leaks, ['opaque-me: trusted.overlay.opaque']);
  const upper = await agentSnapshot(layers.mid, 'upper');
  t.same(upper.leaks, []);
  t.same(upper.entries['opaque-me'].xattrs, { 'trusted.overlay.opaque': '0x79' });
  t.same(upper.entries['etc/hostname'], { type: 'whiteout(chr 0:0)' });
});

t.test("the random generator's model starts from the oracle's merged tree", async (t) => {
  const dir = await tempDir(t, 'harness');
  const layout = await fixtureLayout(join(dir, 'a'), {});
  const m = await mountLayout(t, 'kernel', layout);
  const snap = await agentSnapshot(m.mnt, 'merged');
  await m.unmount();
  const listing = Object.entries(snap.entries)
    .map(([p, e]) => `${e.type} ${p}`)
    .sort();
  t.same(TreeModel.initialListing(), listing, 'model.ts INITIAL lists the merged view of the example layers');
});

t.test('fixture layers carry fixed times, and copy-up keeps them', async (t) => {
  const dir = await tempDir(t, 'harness');
  const a = await fixtureLayout(join(dir, 'a'), {});
  const b = await fixtureLayout(join(dir, 'b'), {});
  const ops: Op[] = [
    { op: 'chmod', path: 'play/f1', mode: '600' },
    { op: 'stat', path: 'play/f1' },
    { op: 'utimens', path: 'play/m1', atime: 'omit', mtime: [500000000, 123456789] },
    { op: 'stat', path: 'play/m1' },
  ];
  const ra = await runOnTarget(t, 'kernel', a, ops);
  const rb = await runOnTarget(t, 'kernel', b, ops);
  t.same(compareRuns(ops, ra, rb), [], 'two copies of the layers compare equal, times included');
  const mtime = (o: Outcome): unknown => ('ok' in o ? (o.value as SnapshotEntry).mtime : o.err);
  t.match(mtime(ra.outcomes[1]), /^10\d{8}\.\d{9}$/, 'a lower file keeps its fixed mtime through copy-up');
  t.equal(mtime(ra.outcomes[3]), '500000000.123456789', 'utimens sets nanoseconds');
  t.match(ra.merged.entries['play'].mtime, /^10\d{8}\.\d{9}$/, 'copying up a child does not change the parent directory times');
  t.equal(ra.merged.entries['.'].mtime, 'recent', 'a time set while the ops run is "recent"');
});

// The agent runs the ops on the host, outside any container, and follows symlinks: an
// absolute target that exists on the host would have the ops read, truncate, chmod or
// write the host's own file (a random run once clobbered /etc/passwd this way).
t.test('no symlink the ops can follow leads to a host file', async (t) => {
  const dir = await tempDir(t, 'diff-links');
  const layers = await buildFixtureLayers(dir);
  const absolute: string[] = LINK_TARGETS.filter((l) => l.startsWith('/'));
  for (const layer of layers.lowers) {
    for (const e of await readdir(layer, { recursive: true, withFileTypes: true })) {
      if (!e.isSymbolicLink()) continue;
      const target = await readlink(join(e.parentPath, e.name));
      if (target.startsWith('/')) absolute.push(target);
    }
  }
  t.ok(absolute.length >= 2, `absolute link targets are still tested (${absolute.join(', ')})`);
  for (const target of absolute) {
    let reached = true;
    try {
      lstatSync(target);
    } catch {
      reached = false;
    }
    t.notOk(reached, `${target} resolves to nothing on the host`);
  }
});
