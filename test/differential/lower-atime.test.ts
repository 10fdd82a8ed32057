/**
 * Reading through the mount leaves the lower layer's atimes as they were, as kernel
 * overlayfs does (it reads its lowers through private noatime mounts and opens their
 * files O_NOATIME): a lower layer is a read-only image shared by many containers, the
 * daemon must not write to it.
 *
 * The lower's files and directories get atimes in the past (before their mtime, so that
 * relatime would move them on any read); then cat, ls, find, readlink and a read of a
 * larger file run on the mount (in child processes), and the lower's atimes are compared
 * before and after, on kernel overlayfs and on stratafs with passthrough on (as root:
 * auto) and off, with the default noatime mount and with relatime. The merged view's
 * atime of the files read is compared with the kernel's after the reads.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { makeLayers } from '../reliability/lib';
import { mountKernelOverlay, mountStratafs, type Mounted } from '../lib/mounts';

/** lower entries, relative to the lower root ('' is the root itself) */
const FILES = ['g', 'd/f', 'd/e/deep', 'big'];
const DIRS = ['', 'd', 'd/e'];
/** read with readlink (ls -l, find -printf %l) */
const LINKS = ['d/ln'];
const PAST = new Date('2020-01-01T00:00:00Z');
const LATER = new Date('2021-01-01T00:00:00Z');

function buildLower(lower: string): void {
  fs.mkdirSync(path.join(lower, 'd/e'), { recursive: true });
  fs.writeFileSync(path.join(lower, 'g'), 'data\n');
  fs.writeFileSync(path.join(lower, 'd/f'), 'f\n');
  fs.writeFileSync(path.join(lower, 'd/e/deep'), 'deep\n');
  fs.writeFileSync(path.join(lower, 'big'), Buffer.alloc(4 << 20, 7));
  // atime before mtime: relatime (and strictatime) would move it on a read
  fs.symlinkSync('f', path.join(lower, 'd/ln'));
  for (const p of [...FILES, ...DIRS]) fs.utimesSync(path.join(lower, p), PAST, LATER);
  for (const p of LINKS) fs.lutimesSync(path.join(lower, p), PAST, LATER);
}

function atimes(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const p of [...DIRS, ...FILES]) out[p || '.'] = fs.statSync(path.join(root, p), { bigint: true }).atimeNs.toString();
  for (const p of LINKS) out[p] = fs.lstatSync(path.join(root, p), { bigint: true }).atimeNs.toString();
  return out;
}

/** the reads, each a child process; fails the test where one fails */
function readAll(t: tap.Test, mnt: string): void {
  const cmds: [string, string[]][] = [
    ['cat', [path.join(mnt, 'g'), path.join(mnt, 'd/f')]],
    ['dd', [`if=${path.join(mnt, 'big')}`, 'of=/dev/null', 'bs=1M', 'status=none']],
    ['ls', ['-la', mnt, path.join(mnt, 'd')]],
    ['find', [mnt, '-type', 'f', '-exec', 'wc', '-c', '{}', '+']],
    ['readlink', [path.join(mnt, 'd/ln')]],
  ];
  for (const [cmd, args] of cmds) {
    const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 60_000, maxBuffer: 1 << 20 });
    t.equal(r.status, 0, `${cmd} ${args.join(' ')}: ${r.stderr.trim()}`);
    if (cmd === 'find') t.match(r.stdout, /5 .*\/d\/e\/deep/, 'find read the deepest file');
  }
}

/** the merged view's atimes of the entries read (child process: the test never touches a mount) */
function mergedAtimes(mnt: string): string[] {
  const r = spawnSync('stat', ['-c', '%n %X', ...FILES.map((p) => path.join(mnt, p))], { encoding: 'utf8' });
  return r.stdout.trim().split('\n').map((l) => l.slice(mnt.length));
}

interface Variant {
  name: string;
  kernel: boolean;
  options: string[];
}

const VARIANTS: Variant[] = [
  { name: 'kernel overlayfs', kernel: true, options: ['redirect_dir=on', 'index=on'] },
  { name: 'stratafs, passthrough auto', kernel: false, options: [] },
  { name: 'stratafs, passthrough off', kernel: false, options: ['passthrough=off'] },
  { name: 'stratafs, relatime, passthrough auto', kernel: false, options: ['relatime'] },
  { name: 'stratafs, relatime, passthrough off', kernel: false, options: ['relatime', 'passthrough=off'] },
];

t.test('reads and listings through the mount leave the lower layer\'s atimes (as kernel overlayfs)', async (t) => {
  let kernelMerged: string[] | undefined;
  for (const v of VARIANTS) {
    await t.test(v.name, async (t) => {
      const l = makeLayers(t, 'loweratime');
      buildLower(l.lower);
      const before = atimes(l.lower);
      const spec = { lowers: [l.lower], upper: l.upper, work: l.work, mnt: l.mnt, options: v.options };
      const m: Mounted = v.kernel ? await mountKernelOverlay(spec) : await mountStratafs(spec);
      t.teardown(() => m.unmount());
      readAll(t, l.mnt);
      const merged = mergedAtimes(l.mnt);
      if (v.kernel) kernelMerged = merged;
      else t.same(merged, kernelMerged, 'the merged view shows the atimes kernel overlayfs shows');
      await m.unmount();
      t.same(atimes(l.lower), before, 'the lower\'s atimes are unchanged');
    });
  }
});
