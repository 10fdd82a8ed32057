// Rootless podman with stratafs as its mount program: an ordinary user with subuid and
// subgid ranges, /dev/fuse 0666 (test/lib/rootless.ts). podman runs the mount program as
// uid 0 inside a user namespace, without CAP_SYS_ADMIN over the host: no trusted.*
// xattrs, no passthrough. Import a busybox rootfs, run a container that writes and
// deletes lower files and replaces a lower dir (opaque), `podman diff` exact, commit,
// run the committed image. fuse-overlayfs (the reference) runs the same script; the run
// times of both are printed, not asserted.
import t from 'tap';
import { join } from 'node:path';
import { rootlessStore } from '../../lib/rootless';
import { busyboxRootfs, tarDir } from '../../lib/rootfs';
import { run, runOk } from '../../lib/proc';
import { diffLines, podmanWriteScript, PODMAN_COMMITTED as COMMITTED, PODMAN_IMAGE as IMAGE, PODMAN_RUN as RUN } from '../../lib/podman';

const WRITE_SCRIPT = podmanWriteScript(true);

const WRITE_OUTPUT = (fs: string): string => `/data:\nkeep\nsub\n\n/data/sub:\nn\nlower motd\nmore\nissue-gone\nfuse.${fs}\n`;
// /data/sub replaced by a new dir: its lower entries are gone from the merged view
const DIFF = ['A /data/sub/n', 'A /newdir', 'A /newdir/deep', 'A /newdir/deep/f', 'A /tmp/x', 'C /data', 'C /data/sub', 'C /etc', 'C /etc/motd', 'C /tmp', 'D /data/gone', 'D /data/sub/a', 'D /data/sub/b', 'D /etc/issue'];
const CHECK = 'cat /tmp/x /etc/motd /newdir/deep/f; ls /data /data/sub; test -e /etc/issue || echo issue-gone; test -e /data/gone || echo data-gone-gone';
const CHECKED = 'new\nlower motd\nmore\nd\n/data:\nkeep\nsub\n\n/data/sub:\nn\nissue-gone\ndata-gone-gone\n';

/** 'PATH NAME' of every trusted.overlay.* and user.overlay.* xattr below DIR (as root sees them). */
async function overlayXattrs(dir: string): Promise<string[]> {
  const r = await run('getfattr', ['-R', '-P', '--absolute-names', '-m', '^(trusted|user)\\.overlay\\.', dir]);
  const names: string[] = [];
  let file = '';
  for (const line of r.stdout.split('\n')) {
    if (line.startsWith('# file: ')) file = line.slice('# file: '.length).slice(dir.length);
    else if (/^(trusted|user)\.overlay\./.test(line)) names.push(`${file} ${line.split('=')[0]}`);
  }
  return names.sort();
}

t.test('rootless podman with mount_program = stratafs', async (t) => {
  const store = await rootlessStore(t);
  const rootfs = await busyboxRootfs(join(store.dir, 'rootfs'));
  const tar = await tarDir(rootfs, join(store.dir, 'rootfs.tar'));
  await runOk('chmod', ['a+r', tar]);
  const map = (await store.podmanOk(['unshare', 'cat', '/proc/self/uid_map'])).trim().split('\n');
  t.ok(map.length > 1 && !/^\s*0\s+0\s/.test(map[0]), `podman runs its helpers in a user namespace (${map[0].trim()})`);
  await store.podmanOk(['import', '--quiet', tar, IMAGE]);

  const started = process.hrtime.bigint();
  const out = await store.podmanOk([...RUN, '--name', 'writer', IMAGE, '/bin/sh', '-c', WRITE_SCRIPT]);
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  t.equal(out, WRITE_OUTPUT('stratafs'), 'the container runs on a stratafs root and sees its changes');
  t.comment(`rootless podman run of the write script with stratafs: ${ms.toFixed(0)} ms (one run, not asserted)`);

  const diff = diffLines(await store.podmanOk(['diff', 'writer']));
  t.same(diff, DIFF, 'podman diff lists exactly the changes');

  // uid 0 of a user namespace cannot set trusted.*: the marks are user.overlay.* (userxattr)
  const upper = (await store.podmanOk(['inspect', '--format', '{{.GraphDriver.Data.UpperDir}}', 'writer'])).trim();
  const marks = await overlayXattrs(upper);
  t.ok(marks.includes('/data/sub user.overlay.opaque'), `the replaced dir is opaque through user.overlay.opaque (${upper})`);
  t.same(marks.filter((m) => m.includes(' trusted.')), [], 'no trusted.overlay.* xattr in the upper');

  await store.podmanOk(['commit', '--quiet', 'writer', COMMITTED]);
  const again = await store.podmanOk([...RUN, '--rm', COMMITTED, '/bin/sh', '-c', CHECK]);
  t.equal(again, CHECKED, 'the committed image has the changes and the deletions');

  await store.podmanOk(['rm', 'writer']);
  await store.podmanOk(['rmi', '--all', '--force']);
});

// The reference on the same path, for the figure printed next to stratafs's. (Its upper
// marks the replaced dir in a namespace containers-storage does not read, so its diff
// and commit of /data/sub differ: not compared.)
t.test('rootless podman with mount_program = fuse-overlayfs (reference)', async (t) => {
  const store = await rootlessStore(t, { mountProgram: '/usr/bin/fuse-overlayfs' });
  const rootfs = await busyboxRootfs(join(store.dir, 'rootfs'));
  const tar = await tarDir(rootfs, join(store.dir, 'rootfs.tar'));
  await runOk('chmod', ['a+r', tar]);
  await store.podmanOk(['import', '--quiet', tar, IMAGE]);
  const started = process.hrtime.bigint();
  const out = await store.podmanOk([...RUN, '--rm', IMAGE, '/bin/sh', '-c', WRITE_SCRIPT]);
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  t.equal(out, WRITE_OUTPUT('fuse-overlayfs'), 'the same script gives the same output');
  t.comment(`rootless podman run of the write script with fuse-overlayfs: ${ms.toFixed(0)} ms (one run, not asserted)`);
  await store.podmanOk(['rmi', '--all', '--force']);
});
