// `mount -o remount,...` of a stratafs mount, as mount(8) hands it over through
// mount.fuse (`stratafs SOURCE MNT -o OPTS,remount,dev,suid`): what a remount cannot
// change is refused in one line, never accepted without effect. (What it can change is
// compared with kernel overlayfs in the differential scenario "mount -o remount".)
import t from 'tap';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { mountStratafs, STRATAFS_BIN } from '../lib/mounts';
import { plainExec, run } from '../lib/proc';
import { tempDir } from '../lib/tmp';

async function mountFlags(mnt: string): Promise<string> {
  const line = (await readFile('/proc/self/mountinfo', 'utf8')).split('\n').find((l) => l.split(' ')[4] === mnt);
  return line?.split(' ')[5] ?? '(not mounted)';
}

const remount = (mnt: string, opts: string) => run(...plainExec([STRATAFS_BIN, 'stratafs', mnt, '-o', `${opts},remount,dev,suid`]), { timeoutMs: 60_000 });

t.test('a remount that would change layers or ids is refused in one line; the mount stays as it was', async (t) => {
  const dir = await tempDir(t, 'remount');
  const spec = { lowers: [join(dir, 'lower')], upper: join(dir, 'upper'), work: join(dir, 'work'), mnt: join(dir, 'mnt') };
  for (const d of [...spec.lowers, spec.upper, spec.work, spec.mnt]) await mkdir(d);
  const m = await mountStratafs({ ...spec, extraOptions: ['nosuid'] });
  t.teardown(() => m.unmount());
  const before = await mountFlags(spec.mnt);
  for (const opts of [`lowerdir=${dir}`, 'upperdir=/tmp,workdir=/tmp', 'uidmapping=0:1000:1', 'ro,volatile']) {
    const r = await remount(spec.mnt, opts);
    t.equal(r.code, 2, `exit 2 for remount,${opts}`);
    t.match(r.stderr, /^stratafs: remount changes only ro\/rw and the mount flags .*cannot change on a mounted stratafs/, `names the problem: ${r.stderr.trim()}`);
    t.equal(r.stderr.trim().split('\n').length, 1, 'one line');
    t.equal(await mountFlags(spec.mnt), before, 'the mount flags are unchanged');
  }
  const ok = await remount(spec.mnt, 'ro');
  t.equal(ok.code, 0, `remount,ro works: ${ok.stderr.trim()}`);
  t.match(await mountFlags(spec.mnt), /^ro,nosuid,nodev,/, 'read-only now; nosuid and nodev kept (mount.fuse\'s dev,suid do not lift them)');
  const back = await remount(spec.mnt, 'rw');
  t.equal(back.code, 0, 'remount,rw works');
  await m.unmount();
  const gone = await remount(spec.mnt, 'ro');
  t.equal(gone.code, 1, 'remount of a directory without a stratafs mount fails');
  t.match(gone.stderr, /no stratafs is mounted there/, gone.stderr.trim());
});
