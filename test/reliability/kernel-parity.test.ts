/**
 * Where kernel overlayfs refuses or answers something, stratafs does the same, each
 * checked against the kernel with the same layers and options:
 * - redirect_dir=off: renaming a directory that comes from a lower is EXDEV (on: it
 *   moves); values the kernel does not know are refused by both;
 * - more than 500 lowers, the same lower twice (also through a symlink), an upper on a
 *   FUSE filesystem: refused, with one line and a non-zero exit, nothing mounted, the
 *   upper untouched;
 * - an upper written by kernel overlayfs with metacopy=on (chown of a lower file, a
 *   rename of one), used as a lower with metacopy=on (as the kernel needs): its files
 *   read with their data.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { isMounted, makeLayers, py, type Layers } from './lib';
import { mountFuseOverlayfs, mountKernelOverlay, mountStratafs, STRATAFS_BIN, type Mounted } from '../lib/mounts';
import { plainExec } from '../lib/proc';

type Target = 'kernel' | 'stratafs';
const TARGETS: Target[] = ['kernel', 'stratafs'];

/** fresh upper, work and mountpoint dirs for one target */
function dirs(l: Layers, tag: string): { upper: string; work: string; mnt: string } {
  const d = { upper: `${l.root}/${tag}-upper`, work: `${l.root}/${tag}-work`, mnt: `${l.root}/${tag}-mnt` };
  for (const x of Object.values(d)) fs.mkdirSync(x, { recursive: true });
  return d;
}

function mountOn(t: Target, lowers: string[], d: { upper: string; work: string; mnt: string }, options: string[]): Promise<Mounted> {
  const spec = { lowers, ...d, options };
  return t === 'kernel' ? mountKernelOverlay(spec) : mountStratafs(spec);
}

/** Both refuse; stratafs with one line matching `pattern`, nothing mounted, the upper untouched. */
function refusedByBoth(t: tap.Test, l: Layers, tag: string, lowers: string, extra: string[], pattern: RegExp, cwd?: string): void {
  const k = dirs(l, `${tag}-k`);
  const kr = spawnSync('mount', ['-t', 'overlay', 'overlay', '-o', [`lowerdir=${lowers}`, `upperdir=${k.upper}`, `workdir=${k.work}`, ...extra].join(','), k.mnt], { encoding: 'utf8', cwd });
  if (kr.status === 0) spawnSync('umount', [k.mnt]);
  t.not(kr.status, 0, `${tag}: kernel overlayfs refuses (${kr.stderr.trim().split('\n')[0]})`);
  const s = dirs(l, `${tag}-s`);
  const [cmd, argv] = plainExec([STRATAFS_BIN, '-o', [`lowerdir=${lowers}`, `upperdir=${s.upper}`, `workdir=${s.work}`, ...extra].join(','), s.mnt]);
  const r = spawnSync(cmd, argv, { encoding: 'utf8', timeout: 60_000, cwd });
  t.teardown(() => {
    if (isMounted(s.mnt)) spawnSync('fusermount3', ['-u', s.mnt]);
  });
  t.not(r.status, 0, `${tag}: stratafs refuses`);
  t.match(r.stderr, pattern, `${tag}: names the problem: ${r.stderr.trim()}`);
  t.equal(r.stderr.trim().split('\n').length, 1, `${tag}: one line`);
  t.notOk(isMounted(s.mnt), `${tag}: nothing mounted`);
  t.same(fs.readdirSync(s.upper), [], `${tag}: the upper is untouched`);
}

const RENAME = 'import os, sys\ntry:\n    os.rename(sys.argv[1], sys.argv[2]); print("ok")\nexcept OSError as e:\n    print(__import__("errno").errorcode[e.errno])';

t.test('redirect_dir: off (and follow) make a lower directory rename EXDEV; on moves it', async (t) => {
  const l = makeLayers(t, 'redirdir');
  fs.mkdirSync(`${l.lower}/dir`);
  fs.writeFileSync(`${l.lower}/dir/f`, 'f');
  fs.writeFileSync(`${l.lower}/file`, 'x');
  for (const value of ['on', 'off', 'follow']) {
    const seen: Record<string, string> = {};
    for (const target of TARGETS) {
      const d = dirs(l, `${target}-${value}`);
      const m = await mountOn(target, [l.lower], d, [`redirect_dir=${value}`]);
      t.teardown(() => m.unmount());
      const dir = (await py(RENAME, [`${d.mnt}/dir`, `${d.mnt}/moved`])).stdout.trim();
      const file = (await py(RENAME, [`${d.mnt}/file`, `${d.mnt}/file2`])).stdout.trim();
      seen[target] = `dir ${dir}, file ${file}`;
      await m.unmount();
    }
    t.equal(seen.stratafs, seen.kernel, `redirect_dir=${value}: ${seen.kernel}`);
    if (value !== 'on') t.equal(seen.kernel, 'dir EXDEV, file ok', `redirect_dir=${value}: the kernel answers EXDEV for the directory`);
  }
  refusedByBoth(t, l, 'redirect-bogus', l.lower, ['redirect_dir=bogus'], /redirect_dir takes on, off or follow/);
});

t.test('more than 500 lowers, the same lower twice, an upper on FUSE: refused', async (t) => {
  const l = makeLayers(t, 'kparity');
  const many = `${l.root}/many`;
  for (let i = 1; i <= 501; i++) fs.mkdirSync(`${many}/${i}`, { recursive: true });
  // relative names: 501 absolute paths do not fit the kernel's one-page option string
  const names = (n: number): string => Array.from({ length: n }, (_x, i) => `${many}/${i + 1}`.slice(many.length + 1)).join(':');
  refusedByBoth(t, l, 'lowers-501', names(501), [], /too many lowerdirs: 501 \(the limit is 500/, many);
  const ok = dirs(l, 'lowers-500');
  const [cmd, argv] = plainExec([STRATAFS_BIN, '-o', `lowerdir=${names(500)},upperdir=${ok.upper},workdir=${ok.work}`, ok.mnt]);
  const r500 = spawnSync(cmd, argv, { encoding: 'utf8', timeout: 60_000, cwd: many });
  t.teardown(() => {
    if (isMounted(ok.mnt)) spawnSync('fusermount3', ['-u', ok.mnt]);
  });
  t.equal(r500.status, 0, `500 lowers mount, as with the kernel ${r500.stderr.trim()}`);
  if (isMounted(ok.mnt)) spawnSync('fusermount3', ['-u', ok.mnt]);

  fs.writeFileSync(`${l.lower}/f`, 'x');
  fs.mkdirSync(`${l.root}/other`);
  refusedByBoth(t, l, 'twice', `${l.lower}:${l.root}/other:${l.lower}`, [], /lowerdir is given twice \(the same directory as/);
  fs.symlinkSync(l.lower, `${l.root}/link`);
  refusedByBoth(t, l, 'twice-symlink', `${l.lower}:${l.root}/link`, [], /lowerdir is given twice/);

  // an upper inside a FUSE mount (fuse-overlayfs here)
  const f = dirs(l, 'fuse');
  const fl = `${l.root}/fuse-lower`;
  fs.mkdirSync(fl);
  const fm = await mountFuseOverlayfs({ lowers: [fl], upper: f.upper, work: f.work, mnt: f.mnt });
  t.teardown(() => fm.unmount());
  spawnSync('mkdir', ['-p', `${f.mnt}/u/up`, `${f.mnt}/u/wk`, `${f.mnt}/u/mk`]);
  const k = spawnSync('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${l.lower},upperdir=${f.mnt}/u/up,workdir=${f.mnt}/u/wk`, `${f.mnt}/u/mk`], { encoding: 'utf8' });
  if (k.status === 0) spawnSync('umount', [`${f.mnt}/u/mk`]);
  t.not(k.status, 0, 'kernel overlayfs refuses an upper on FUSE');
  const [c2, a2] = plainExec([STRATAFS_BIN, '-o', `lowerdir=${l.lower},upperdir=${f.mnt}/u/up,workdir=${f.mnt}/u/wk`, `${f.mnt}/u/mk`]);
  const s = spawnSync(c2, a2, { encoding: 'utf8', timeout: 60_000 });
  t.teardown(() => {
    if (isMounted(`${f.mnt}/u/mk`)) spawnSync('fusermount3', ['-u', `${f.mnt}/u/mk`]);
  });
  t.not(s.status, 0, 'stratafs refuses an upper on FUSE');
  t.match(s.stderr, /upperdir is on a FUSE filesystem \(fuse\.fuse-overlayfs/, s.stderr.trim());
  t.equal(s.stderr.trim().split('\n').length, 1, 'one line');
  await fm.unmount();
});

t.test('a lower holding kernel metacopy files reads with their data', async (t) => {
  const l = makeLayers(t, 'mclower');
  fs.writeFileSync(`${l.lower}/f`, 'lower data\n');
  fs.writeFileSync(`${l.lower}/g`, 'moved data\n');
  fs.mkdirSync(`${l.lower}/d`);
  // kernel overlayfs with metacopy=on writes the upper: chown (metadata only) and a rename
  const k = dirs(l, 'kmc');
  const km = await mountKernelOverlay({ lowers: [l.lower], ...k, options: ['metacopy=on', 'redirect_dir=on', 'index=on'] });
  t.teardown(() => km.unmount());
  spawnSync('chown', ['5:6', `${k.mnt}/f`]);
  spawnSync('mv', [`${k.mnt}/g`, `${k.mnt}/d/g2`]);
  await km.unmount();
  const mc = spawnSync('getfattr', ['-n', 'trusted.overlay.metacopy', `${k.upper}/f`], { encoding: 'utf8' });
  t.equal(mc.status, 0, 'the kernel wrote f as a metacopy file');
  const seen: Record<string, string> = {};
  for (const target of TARGETS) {
    const d = dirs(l, `read-${target}`);
    // the kernel follows lower metacopy files only with metacopy=on (EPERM without)
    const m = await mountOn(target, [k.upper, l.lower], d, target === 'kernel' ? ['metacopy=on', 'redirect_dir=on'] : ['metacopy=on']);
    t.teardown(() => m.unmount());
    const r = spawnSync('sh', ['-c', `cat ${d.mnt}/f ${d.mnt}/d/g2; stat -c '%s %u:%g' ${d.mnt}/f; echo more >> ${d.mnt}/f; cat ${d.mnt}/f`], { encoding: 'utf8' });
    seen[target] = r.stdout;
    await m.unmount();
  }
  t.equal(seen.kernel, 'lower data\nmoved data\n11 5:6\nlower data\nmore\n', 'kernel overlayfs reads the data below');
  t.equal(seen.stratafs, seen.kernel, 'stratafs reads and copies up the same');
});
