// Volumes: a host directory bind-mounted onto a directory of a rootfs mounted with
// stratafs, as a container runtime does. Writes, appends, deletes and mkdirs through the
// volume land in the host directory and leave the upper layer alone; kernel overlayfs over
// the same lowers is the oracle. Then the same through podman's `-v`.
import t, { type Test } from 'tap';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { agentSnapshot } from '../../lib/agent';
import { containerStore, HOST_PATH, hostMount } from '../../lib/containers';
import type { TargetName } from '../../lib/mounts';
import { run } from '../../lib/proc';
import { busyboxLayers, busyboxRootfs, tarDir } from '../../lib/rootfs';
import { tempDir } from '../../lib/tmp';
import { compareSnapshots, formatDifferences } from '../../differential/compare';
import { mountLayout, targetFromEnv } from '../../differential/harness';

const TARGET_B = targetFromEnv();
const SCRIPT = [
  'echo new > /srv/vol/new',
  'echo appended >> /srv/vol/existing',
  'rm /srv/vol/old',
  'mkdir -p /srv/vol/d/e',
  'echo outside > /tmp/outside',
  'cat /srv/vol/existing',
  'ls /srv/vol',
].join('; ');

async function volumeRun(t: Test, target: TargetName, dir: string, lowers: string[]) {
  const layout = { lowers, upper: join(dir, 'upper'), work: join(dir, 'work'), mnt: join(dir, 'mnt') };
  const vol = join(dir, 'volume');
  for (const d of [layout.upper, layout.work, layout.mnt, vol]) await mkdir(d, { recursive: true });
  await writeFile(join(vol, 'existing'), 'from the host\n');
  await writeFile(join(vol, 'old'), 'to delete\n');
  const m = await mountLayout(t, target, layout);
  const unbind = await hostMount(t, join(m.mnt, 'srv', 'vol'), vol);
  const r = await run('chroot', [m.mnt, '/bin/sh', '-c', SCRIPT], { timeoutMs: 60_000, env: { PATH: HOST_PATH } });
  await unbind();
  const merged = await agentSnapshot(m.mnt, 'merged');
  await m.unmount();
  const upper = await agentSnapshot(layout.upper, 'upper');
  const volume = await agentSnapshot(vol, 'merged');
  return { ...r, merged, upper, volume };
}

t.test(`a bind-mounted volume in a rootfs: kernel overlayfs vs ${TARGET_B}`, async (t) => {
  const dir = await tempDir(t, 'volumes');
  const lowers = await busyboxLayers(join(dir, 'layers'));
  const a = await volumeRun(t, 'kernel', join(dir, 'kernel'), lowers);
  const b = await volumeRun(t, TARGET_B, join(dir, TARGET_B), lowers);

  t.equal(a.code, 0, `kernel: exit 0 ${a.stderr}`);
  t.equal(a.stdout, 'from the host\nappended\nd\nexisting\nnew\n', 'kernel: the script saw the volume');
  t.equal(b.code, 0, `${TARGET_B}: exit 0 ${b.stderr}`);
  t.equal(b.stdout, a.stdout, `${TARGET_B}: same output`);
  t.same(Object.keys(b.volume.entries).sort(), ['.', 'd', 'd/e', 'existing', 'new'], `${TARGET_B}: the volume holds the changes`);
  t.same(
    Object.keys(b.upper.entries).filter((p) => p.startsWith('srv')),
    [],
    `${TARGET_B}: nothing of the volume (not even its mount point) in the upper`,
  );
  t.match(b.upper.entries['tmp/outside'], { type: 'file' }, `${TARGET_B}: a write outside the volume is in the upper`);
  const diffs = [
    ...compareSnapshots('merged', a.volume, b.volume),
    ...compareSnapshots('merged', a.merged, b.merged),
    ...compareSnapshots('upper', a.upper, b.upper),
  ];
  if (diffs.length > 0) t.comment(formatDifferences(diffs, ['kernel', TARGET_B]));
  t.equal(diffs.length, 0, 'volume, merged view and upper layer match kernel overlayfs');
});

t.test('podman run -v on stratafs', async (t) => {
  const store = await containerStore(t, { prefix: 'podman-vol' });
  const image = 'localhost/stratafs-test/volumes:1';
  const rootfs = await busyboxRootfs(join(store.dir, 'rootfs'));
  await store.podmanOk(['import', '--quiet', await tarDir(rootfs, join(store.dir, 'rootfs.tar')), image]);
  const vol = join(store.dir, 'volume');
  await mkdir(vol);
  await writeFile(join(vol, 'existing'), 'from the host\n');

  const out = await store.podmanOk([
    'run', '--name', 'vol', '--network', 'none', '--pull', 'never', '-v', `${vol}:/srv/vol`, image,
    '/bin/sh', '-c', 'echo new > /srv/vol/new; rm /srv/vol/existing; echo outside > /tmp/outside; ls /srv/vol',
  ]);
  t.equal(out, 'new\n', 'the container sees the volume');
  t.equal(await readFile(join(vol, 'new'), 'utf8'), 'new\n', 'the write landed in the host dir');
  t.notOk(existsSync(join(vol, 'existing')), 'the delete too');
  const upper = (await store.podmanOk(['inspect', '--format', '{{.GraphDriver.Data.UpperDir}}', 'vol'])).trim();
  t.ok(existsSync(join(upper, 'tmp', 'outside')), `a write outside the volume is in the container's upper (${upper})`);
  t.notOk(existsSync(join(upper, 'srv', 'vol', 'new')), 'the volume write is not');
  await store.podmanOk(['rm', 'vol']);
  await store.clean();
  t.same(await store.mounts(), [], 'no mounts left below the store');
});
