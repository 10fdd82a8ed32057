// buildah 1.28 with stratafs as mount_program (private store, shared with podman): `from`
// an imported busybox image, `run --isolation chroot` writing a file and deleting a lower
// one, `commit`, then podman runs the result and sees both changes.
import t from 'tap';
import { join } from 'node:path';
import { containerStore } from '../../lib/containers';
import { busyboxRootfs, tarDir } from '../../lib/rootfs';

const BASE = 'localhost/stratafs-test/buildah-base:1';
const BUILT = 'localhost/stratafs-test/buildah-built:1';

t.test('buildah from / run --isolation chroot / commit on stratafs', async (t) => {
  const store = await containerStore(t, { prefix: 'buildah' });
  const rootfs = await busyboxRootfs(join(store.dir, 'rootfs'));
  await store.podmanOk(['import', '--quiet', await tarDir(rootfs, join(store.dir, 'rootfs.tar')), BASE]);

  const ctr = (await store.buildahOk(['from', '--quiet', '--pull-never', BASE])).trim();
  t.ok(ctr, `working container ${ctr}`);
  const mnt = (await store.buildahOk(['mount', ctr])).trim();
  t.match((await store.mounts()).join('\n'), mnt, 'the working container is mounted below the store');
  const out = await store.buildahOk([
    'run',
    '--isolation',
    'chroot',
    ctr,
    '--',
    '/bin/sh',
    '-c',
    "echo built > /built; rm /etc/motd; mkdir -p /opt/app; echo app > /opt/app/run; ls /; grep ' / ' /proc/mounts | cut -d' ' -f3",
  ]);
  t.match(out, /^bin\nbuilt\ndata\n/, 'the file is visible inside');
  t.match(out, /\nfuse\.stratafs\n$/, 'the root is a stratafs mount');
  await store.buildahOk(['umount', ctr]);
  await store.buildahOk(['commit', '--quiet', ctr, BUILT]);
  await store.buildahOk(['rm', ctr]);

  const seen = await store.podmanOk([
    'run',
    '--rm',
    '--network',
    'none',
    '--pull',
    'never',
    BUILT,
    '/bin/sh',
    '-c',
    'cat /built /opt/app/run /etc/issue; test -e /etc/motd || echo motd-gone',
  ]);
  t.equal(seen, 'built\napp\nbusybox test rootfs\nmotd-gone\n', 'podman runs the committed image with the changes');

  await store.clean();
  t.same(await store.mounts(), [], 'no mounts left below the store');
});
