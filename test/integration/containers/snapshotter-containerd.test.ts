// containerd 1.7 (Debian trixie's) with `stratafs snapshotter` as its proxy snapshotter,
// driven by ctr: image import (unpacking through the snapshotter's mounts), containers
// that write and delete lower files, ctr snapshots ls/info/usage/mounts/rm, a
// container's changes committed into a new image, removal of everything; then a
// snapshotter killed with SIGKILL while a container runs, and restarted.
import t from 'tap';
import * as fs from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { mkdir, writeFile } from 'node:fs/promises';
import { tempDir } from '../../lib/tmp';
import { runOk, waitFor } from '../../lib/proc';
import { busyboxRootfs } from '../../lib/rootfs';
import { dockerArchive, dockerArchiveOfTars } from '../../lib/image-archive';
import { mountDaemonsUnder, mountsUnder, startContainerd, startSnapshotterProc } from '../../lib/containerd';

const IMAGE = 'docker.io/stratafs-test/two:latest';
const COMMITTED = 'docker.io/stratafs-test/committed:latest';
const SN = ['--snapshotter', 'stratafs'];

t.test('containerd + ctr on the stratafs snapshotter', async (t) => {
  const base = await tempDir(t, 'snap-ctr');
  const snap = await startSnapshotterProc(t, base);
  const cd = await startContainerd(t, base, snap);
  const ctrOk = cd.ctrOk;
  const snapshots = async (): Promise<string[]> =>
    (await ctrOk(['snapshots', ...SN, 'ls'])).split('\n').slice(1).filter(Boolean).map((l) => l.split(/\s+/).filter(Boolean).join(' '));

  // a busybox rootfs and a layer with a deletion (etc/.wh.motd) and an opaque dir (data/)
  const rootfs = await busyboxRootfs(join(base, 'img', 'rootfs'));
  const top = join(base, 'img', 'top');
  await mkdir(join(top, 'data'), { recursive: true });
  await mkdir(join(top, 'etc'), { recursive: true });
  await writeFile(join(top, 'data', '.wh..wh..opq'), '');
  await writeFile(join(top, 'data', 'fresh'), 'fresh\n');
  await writeFile(join(top, 'etc', '.wh.motd'), '');
  const archive = await dockerArchive(join(base, 'img'), IMAGE, [rootfs, top]);

  await t.test('image import unpacks through the snapshotter', async (t) => {
    await ctrOk(['images', 'import', ...SN, archive]);
    const ls = await snapshots();
    t.equal(ls.length, 2, `two committed layers:\n${ls.join('\n')}`);
    t.ok(ls.every((l) => l.endsWith('Committed')));
    // the top layer was written through a fuse3.stratafs mount: its deletion is a whiteout
    const dirs = fs.readdirSync(join(snap.root, 'snapshots')).map((d) => join(snap.root, 'snapshots', d, 'fs'));
    const withMotd = dirs.filter((d) => fs.existsSync(join(d, 'etc', 'motd')) || isCharDev(join(d, 'etc', 'motd')));
    t.equal(withMotd.length, 2, 'etc/motd in both layers');
    t.ok(withMotd.some((d) => isCharDev(join(d, 'etc', 'motd'))), 'in the top one as a 0/0 character device');
    t.notOk(dirs.some((d) => fs.existsSync(join(d, 'etc', '.wh.motd'))), 'no .wh. file written');
  });

  await t.test('ctr run: the image as layered, writes and deletes of lower files', async (t) => {
    const script = 'ls -a /data; test -e /etc/motd || echo motd-gone; cat /etc/issue; ' +
      'echo new > /tmp/x; rm /etc/issue; echo more >> /etc/passwd; rm /data/fresh; mkdir -p /newdir/deep; echo d > /newdir/deep/f; ' +
      'ls /etc; grep " / " /proc/mounts | cut -d" " -f3';
    const out = await ctrOk(['run', ...SN, IMAGE, 'c1', '/bin/sh', '-c', script]);
    t.equal(out, '.\n..\nfresh\nmotd-gone\nbusybox test rootfs\ngroup\npasswd\nfuse.stratafs\n',
      'opaque dir and whiteout honoured, the deletion done, the root a stratafs mount');
    t.same(await mountsUnder([base], 'fuse.stratafs'), [], 'the task is gone: its rootfs is unmounted');
    t.ok(await waitFor(() => mountDaemonsUnder(base).length === 0, 10_000), 'and its stratafs process ended');
  });

  await t.test('ctr snapshots ls / info / usage / mounts / rm', async (t) => {
    const ls = await snapshots();
    const c1 = ls.find((l) => l.startsWith('c1 '));
    t.ok(c1 !== undefined && c1.endsWith(' Active'), `c1 is active: ${c1}`);
    const info = JSON.parse(await ctrOk(['snapshots', ...SN, 'info', 'c1'])) as { Kind: string; Name: string; Parent: string };
    t.equal(info.Kind, 'Active');
    t.ok(ls.some((l) => l.startsWith(`${info.Parent} `)), 'its parent is the top image layer');
    const usage = (await ctrOk(['snapshots', ...SN, 'usage', 'c1'])).split('\n')[1].split(/\s+/).filter(Boolean);
    t.equal(usage[0], 'c1');
    t.ok(Number(usage[usage.length - 1]) >= 8, `inodes of the writes and whiteouts counted: ${usage.join(' ')}`);
    const mounts = await ctrOk(['snapshots', ...SN, 'mounts', '/target', 'c1']);
    t.match(mounts, /^mount -t fuse3\.stratafs stratafs \/target -o lowerdir=.*,upperdir=.*,workdir=/, 'a fuse3.stratafs mount');
    await ctrOk(['snapshots', ...SN, 'prepare', 'extra', info.Parent]);
    const refused = await cd.ctr(['snapshots', ...SN, 'rm', info.Parent]);
    t.not(refused.code, 0, 'a parent cannot be removed');
    t.match(refused.stderr, /failed precondition|has children/, refused.stderr.trim());
    await ctrOk(['snapshots', ...SN, 'rm', 'extra']);
    t.notOk((await snapshots()).some((l) => l.startsWith('extra ')), 'ctr snapshots rm removed it');
  });

  await t.test('a container\'s changes committed into a new image', async (t) => {
    // containerd's differ compares a view of the parent with c1's mount, both ours
    const diff = join(base, 'img', 'archive', 'layer2.tar');
    const gz = join(base, 'c1-diff.tar.gz');
    await runOk('bash', ['-c', '"$0" -a "$1" snapshots --snapshotter stratafs diff c1 > "$2" && gzip -dc < "$2" > "$3"',
      join(cd.prefix, 'usr', 'bin', 'ctr'), cd.address, gz, diff], { timeoutMs: 120_000 });
    // the differ left its gzip blob in the content store, unreferenced: the import below
    // would reuse it for the same uncompressed layer while the garbage collector deletes
    // it; take it out first (it may be gone already)
    await cd.ctr(['content', 'rm', `sha256:${createHash('sha256').update(fs.readFileSync(gz)).digest('hex')}`]);
    const names = (await runOk('tar', ['-tf', diff])).split('\n').filter(Boolean).map((n) => n.replace(/^\.\//, '')).sort();
    for (const n of ['etc/.wh.issue', 'data/.wh.fresh', 'tmp/x', 'newdir/deep/f', 'etc/passwd']) t.ok(names.includes(n), `the diff has ${n}`);
    const img2 = join(base, 'img2');
    const archive2 = await dockerArchiveOfTars(img2, COMMITTED,
      [join(base, 'img', 'archive', 'layer0.tar'), join(base, 'img', 'archive', 'layer1.tar'), diff]);
    await ctrOk(['images', 'import', ...SN, archive2]);
    const check = 'cat /tmp/x /newdir/deep/f; tail -n1 /etc/passwd; test -e /etc/issue || echo issue-gone; ls -a /data; ls /etc';
    const out = await ctrOk(['run', '--rm', ...SN, COMMITTED, 'c2', '/bin/sh', '-c', check]);
    t.equal(out, 'new\nd\nmore\nissue-gone\n.\n..\ngroup\npasswd\n', 'the new image has the changes and the deletions');
  });

  await t.test('removing everything leaves no snapshot, no directory, no mount', async (t) => {
    await ctrOk(['containers', 'rm', 'c1']);
    await ctrOk(['images', 'rm', '--sync', IMAGE, COMMITTED]);
    t.same(await snapshots(), [], 'no snapshots');
    await waitForEmpty(join(snap.root, 'snapshots'));
    t.same(fs.readdirSync(join(snap.root, 'snapshots')), [], 'no snapshot directories');
    t.same(await mountsUnder([base]), [], 'no mounts');
    t.ok(await waitFor(() => mountDaemonsUnder(base).length === 0, 10_000), 'no stratafs processes');
  });

  await t.test('kill -9 of the snapshotter while a container runs, and a restart', async (t) => {
    await ctrOk(['images', 'import', ...SN, archive]);
    await ctrOk(['run', '-d', ...SN, IMAGE, 'c3', '/bin/sh', '-c', 'echo started > /tmp/s; exec sleep 1000']);
    const exec = async (id: string, cmd: string): Promise<string> => ctrOk(['tasks', 'exec', '--exec-id', id, 'c3', '/bin/sh', '-c', cmd]);
    for (let i = 0; i < 100 && (await cd.ctr(['tasks', 'exec', '--exec-id', `w${i}`, 'c3', 'test', '-e', '/tmp/s'])).code !== 0; i++) {
      await new Promise((r) => setTimeout(r, 100));
    }
    await snap.killAndRestart();
    // containerd finds the new process on the same socket by itself (its gRPC reconnects)
    t.ok(await waitForAsync(async () => (await cd.ctr(['snapshots', ...SN, 'ls'])).code === 0, 20_000), 'containerd reaches the restarted snapshotter');
    t.equal(await exec('e1', 'cat /tmp/s /etc/issue; echo after > /tmp/a; cat /tmp/a'), 'started\nbusybox test rootfs\nafter\n',
      'the running container keeps its root: containerd mounted it, not the snapshotter');
    await ctrOk(['tasks', 'kill', '-s', 'SIGKILL', 'c3']);
    for (let i = 0; i < 100 && !/STOPPED/.test(await ctrOk(['tasks', 'ls'])); i++) await new Promise((r) => setTimeout(r, 100));
    await ctrOk(['tasks', 'delete', 'c3']);
    await ctrOk(['containers', 'rm', 'c3']);
    t.notOk((await snapshots()).some((l) => l.startsWith('c3 ')), 'the restarted snapshotter removed the container\'s snapshot');
    const out = await ctrOk(['run', '--rm', ...SN, IMAGE, 'c4', '/bin/sh', '-c', 'cat /etc/issue; ls -a /data']);
    t.equal(out, 'busybox test rootfs\n.\n..\nfresh\n', 'a new container runs');
    await ctrOk(['images', 'rm', '--sync', IMAGE]);
    await waitForEmpty(join(snap.root, 'snapshots'));
    t.same(fs.readdirSync(join(snap.root, 'snapshots')), [], 'the restarted snapshotter removed every directory');
    t.same(await mountsUnder([base]), [], 'no mounts left');
  });
});

function isCharDev(p: string): boolean {
  try {
    const st = fs.lstatSync(p);
    return st.isCharacterDevice() && st.rdev === 0;
  } catch {
    return false;
  }
}

async function waitForAsync(cond: () => Promise<boolean>, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return true;
    await new Promise((r) => setTimeout(r, 200));
  }
  return cond();
}

async function waitForEmpty(dir: string): Promise<void> {
  for (let i = 0; i < 100 && fs.readdirSync(dir).length > 0; i++) await new Promise((r) => setTimeout(r, 100));
}
