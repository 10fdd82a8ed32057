// runc runs an OCI bundle whose root.path is a stratafs mount over the busybox rootfs
// split into two lowers (network namespace, no terminal, no hooks, low rlimits). The
// container writes, deletes a lower file and a lower dir, and makes a dir; the same
// bundle on kernel overlayfs over the same lowers is the oracle: same output, same
// merged tree, same upper layer.
import t, { type Test } from 'tap';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { agentSnapshot } from '../../lib/agent';
import { runcBundle } from '../../lib/containers';
import type { TargetName } from '../../lib/mounts';
import { run } from '../../lib/proc';
import { busyboxLayers } from '../../lib/rootfs';
import { tempDir } from '../../lib/tmp';
import { compareSnapshots, formatDifferences } from '../../differential/compare';
import { mountLayout, targetFromEnv } from '../../differential/harness';

const SCRIPT = [
  'echo fromrunc > /tmp/r',
  'rm /etc/issue',
  'rm -r /data/sub',
  'mkdir -p /var/log/app',
  'echo line >> /etc/motd',
  'ls /etc; ls /data',
  'ulimit -n',
  'ip link 2>/dev/null | grep -c "^[0-9]"',
].join('; ');
const TARGET_B = targetFromEnv();

async function runcRun(t: Test, target: TargetName, dir: string, lowers: string[]) {
  const layout = { lowers, upper: join(dir, 'upper'), work: join(dir, 'work'), mnt: join(dir, 'rootfs') };
  for (const d of [layout.upper, layout.work, layout.mnt]) await mkdir(d, { recursive: true });
  const m = await mountLayout(t, target, layout);
  const bundle = await runcBundle(join(dir, 'bundle'), m.mnt, ['/bin/sh', '-c', SCRIPT]);
  const state = join(dir, 'runc-state');
  const id = `stratafs-test-${process.pid}-${target}`;
  t.teardown(() => run('runc', ['--root', state, 'delete', '--force', id], { timeoutMs: 30_000 }));
  const r = await run('runc', ['--root', state, 'run', '--bundle', bundle, id], { timeoutMs: 120_000 });
  const merged = await agentSnapshot(m.mnt, 'merged');
  await m.unmount();
  const upper = await agentSnapshot(layout.upper, 'upper');
  return { ...r, merged, upper };
}

t.test(`runc run on a stratafs root: kernel overlayfs vs ${TARGET_B}`, async (t) => {
  const dir = await tempDir(t, 'runc');
  const lowers = await busyboxLayers(join(dir, 'layers'));
  const a = await runcRun(t, 'kernel', join(dir, 'kernel'), lowers);
  const b = await runcRun(t, TARGET_B, join(dir, TARGET_B), lowers);

  t.equal(a.code, 0, `kernel: runc exits 0 ${a.stderr}`);
  t.equal(a.stdout, 'group\nmotd\npasswd\ngone\nkeep\n1024\n1\n', 'kernel: the script ran in the container (own network namespace: lo only)');
  t.equal(b.code, 0, `${TARGET_B}: runc exits 0 ${b.stderr}`);
  t.equal(b.stdout, a.stdout, `${TARGET_B}: same output`);

  t.match(b.upper.entries['tmp/r'], { type: 'file', size: 9 }, `${TARGET_B}: the new file is in the upper`);
  t.same(b.upper.entries['etc/issue'], { type: 'whiteout(chr 0:0)' }, `${TARGET_B}: etc/issue is a whiteout in the upper`);
  t.same(b.upper.entries['data/sub'], { type: 'whiteout(chr 0:0)' }, `${TARGET_B}: data/sub is a whiteout in the upper`);
  t.same(b.merged.leaks, [], `${TARGET_B}: no private overlay xattr visible`);
  const diffs = [...compareSnapshots('merged', a.merged, b.merged), ...compareSnapshots('upper', a.upper, b.upper)];
  if (diffs.length > 0) t.comment(formatDifferences(diffs, ['kernel', TARGET_B]));
  t.equal(diffs.length, 0, 'merged view and upper layer match kernel overlayfs');
});
