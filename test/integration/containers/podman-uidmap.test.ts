// Rootful `podman run --uidmap 0:100000:65536` with stratafs as mount_program, against the
// kernel overlay driver: the same owners inside the container (lower files, files it
// creates, files it changes), the same `podman diff`; the upper stores container ids (0). containers-storage hands the mount program lowers on
// idmapped mounts *and* `uidmapping=:0:100000:65536`: ids of such lowers are already
// shifted and must not be mapped twice (fuse-overlayfs 1.10 fails here: runc cannot open
// the rootfs files it sees as owned by 65534).
import t from 'tap';
import { chmod, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { containerStore, KERNEL_DRIVER } from '../../lib/containers';
import { busyboxRootfs, tarDir } from '../../lib/rootfs';

const IMAGE = 'localhost/stratafs-test/busybox:uidmap';
const MAP = ['--uidmap', '0:100000:65536', '--gidmap', '0:100000:65536'];
const SCRIPT = 'echo more >> /etc/motd; echo new > /tmp/x; mkdir /newdir; rm /etc/issue; ls -ln /etc/motd /tmp/x /bin/busybox /etc/passwd | sed "s/ \\+/ /g" | cut -d" " -f1,3,4,9; ls -lnd /newdir /tmp | sed "s/ \\+/ /g" | cut -d" " -f1,3,4,9; cat /proc/self/uid_map | tr -s " "';

t.test('podman run --uidmap: stratafs as the kernel driver', async (t) => {
  const seen: Record<string, { out: string; diff: string[]; upper: string[] }> = {};
  for (const driver of ['kernel', 'stratafs'] as const) {
    const store = await containerStore(t, driver === 'kernel' ? { mountProgram: KERNEL_DRIVER, prefix: 'uidmap-kernel' } : { prefix: 'uidmap' });
    // the container's root (host uid 100000) must reach its rootfs below the store
    await chmod(store.dir, 0o755);
    const rootfs = await busyboxRootfs(join(store.dir, 'rootfs'));
    await store.podmanOk(['import', '--quiet', await tarDir(rootfs, join(store.dir, 'rootfs.tar')), IMAGE]);
    const out = await store.podmanOk(['run', '--network', 'none', '--pull', 'never', '--name', 'mapped', ...MAP, IMAGE, '/bin/sh', '-c', SCRIPT]);
    const diff = (await store.podmanOk(['diff', 'mapped'])).split('\n').filter(Boolean).sort();
    const upperDir = (await store.podmanOk(['inspect', '--format', '{{.GraphDriver.Data.UpperDir}}', 'mapped'])).trim();
    const upper: string[] = [];
    for (const rel of ['etc/motd', 'tmp/x', 'newdir']) {
      const s = await stat(join(upperDir, rel));
      upper.push(`${rel} ${s.uid}:${s.gid}`);
    }
    t.ok((await readdir(upperDir)).length > 0, `${driver}: the upper holds the changes`);
    seen[driver] = { out, diff, upper };
    await store.podman(['rm', '--force', 'mapped']); // cleanup only: the store's teardown retries
  }
  t.match(seen.kernel.out, /0 100000 65536/, 'the kernel driver ran the container in the user namespace');
  t.equal(seen.stratafs.out, seen.kernel.out, `same owners inside the container:\n${seen.stratafs.out}`);
  t.same(seen.stratafs.diff, seen.kernel.diff, 'same podman diff');
  // a mount program's upper holds container ids (the mapping translates them), so a
  // commit carries container ids; the kernel driver's upper holds the host ids its
  // idmapped lowers gave (podman 4.3 commits those as they are): README, differences
  t.same(seen.stratafs.upper, ['etc/motd 0:0', 'tmp/x 0:0', 'newdir 0:0'], 'the upper stores container ids');
  t.comment(`kernel driver's upper: ${seen.kernel.upper.join(', ')}`);
});
