// The differential harness must be able to fail: kernel overlayfs against kernel
// overlayfs on layers that differ in known ways must report exactly those differences.
import t from 'tap';
import { appendFile, chmod } from 'node:fs/promises';
import { join } from 'node:path';
import { agentSnapshot, type Op } from '../lib/agent';
import { buildFixtureLayers } from '../lib/layers';
import { tempDir } from '../lib/tmp';
import { type Difference } from './compare';
import { compareRuns, fixtureLayout, runOnTarget } from './harness';

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
  // Deliberate differences in B's base layer: one file's content, one file's mode.
  await appendFile(join(b.lowers[2], 'play/f1'), 'tweak\n');
  await chmod(join(b.lowers[2], 'bin/hello'), 0o700);

  const ra = await runOnTarget(t, 'kernel', a, OPS);
  const rb = await runOnTarget(t, 'kernel', b, OPS);
  const found = compareRuns(OPS, ra, rb).map(key).sort();
  t.same(
    found,
    [
      'merged bin/hello mode',
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
