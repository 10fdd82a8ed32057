/**
 * Every misuse of the command: one line naming the problem, exit != 0, nothing mounted
 * and nothing changed on disk (the layer and work dirs are compared entry by entry,
 * with modes and times, before and after).
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { isMounted, makeLayers, mountWith, type Layers } from './lib';
import { STRATAFS_BIN } from '../lib/mounts';
import { plainExec } from '../lib/proc';

/** Every path below root with type, mode, size, mtime and xattrs: what "changed on disk" means here. */
function fingerprint(root: string): string {
  const r = spawnSync('sh', ['-c', 'find . -path ./mnt -prune -o -printf "%p %y %m %s %T@\\n" | sort; getfattr -R -d -m - --absolute-names . 2>/dev/null | grep -v "^# file: ./mnt"'],
    { cwd: root, encoding: 'utf8' });
  return r.stdout;
}

function cli(args: string[]): { code: number | null; stderr: string } {
  const [cmd, argv] = plainExec([STRATAFS_BIN, ...args]);
  const r = spawnSync(cmd, argv, { encoding: 'utf8', timeout: 30_000 });
  return { code: r.status, stderr: r.stderr };
}

function expectRefused(t: tap.Test, l: Layers, args: string[], pattern: RegExp): void {
  const before = fingerprint(l.root);
  const r = cli(args);
  t.not(r.code, 0, `exit != 0: ${args.join(' ')}`);
  t.match(r.stderr, pattern, `names the problem: ${r.stderr.trim()}`);
  t.equal(r.stderr.trim().split('\n').length, 1, 'one line');
  t.notOk(isMounted(l.mnt), 'nothing mounted');
  t.equal(fingerprint(l.root), before, 'nothing changed on disk');
}

t.test('option misuse', async (t) => {
  const l = makeLayers(t, 'badopt');
  fs.writeFileSync(`${l.lower}/file`, 'x');
  fs.mkdirSync(`${l.work}/work`);
  fs.writeFileSync(`${l.work}/work/leftover`, 'from an earlier mount');
  const lu = `lowerdir=${l.lower},upperdir=${l.upper},workdir=${l.work}`;
  const cases: [string[], RegExp][] = [
    [[], /no mountpoint/],
    [['-o'], /-o needs an option list/],
    [['--bogus', l.mnt], /unknown flag "--bogus"/],
    [[l.mnt], /lowerdir= is required/],
    [['-o', `${lu},frobnicate=1`, l.mnt], /unknown option "frobnicate"/],
    [['-o', `${lu},lowerdir=${l.lower}`, l.mnt], /option lowerdir is given twice/],
    [['-o', lu, '-o', `upperdir=${l.upper}`, l.mnt], /option upperdir is given twice/],
    [['-o', `${lu},timeout=1,timeout=2`, l.mnt], /option timeout is given twice/],
    [['-o', `${lu},passthrough=off,passthrough=auto`, l.mnt], /option passthrough is given twice/],
    [['-o', `${lu},timeout=soon`, l.mnt], /timeout needs a number/],
    [['-o', `${lu},uidmapping=0:1000`, l.mnt], /DISK:SHOWN:COUNT/],
    [['-o', `${lu},context="unbalanced`, l.mnt], /unbalanced quote/],
    [['-o', `lowerdir=${l.lower}::${l.lower}`, l.mnt], /empty entry/],
    [['-o', `lowerdir=${l.lower},upperdir=${l.upper}`, l.mnt], /needs workdir/],
    [['-o', `lowerdir=${l.lower},workdir=${l.work}`, l.mnt], /without upperdir/],
    [['-o', lu, 'stratafs', l.mnt, l.mnt], /one mountpoint expected/],
  ];
  for (const [args, pattern] of cases) expectRefused(t, l, args, pattern);
});

t.test('layer misuse', async (t) => {
  const l = makeLayers(t, 'badlayer');
  fs.writeFileSync(`${l.lower}/file`, 'x');
  fs.mkdirSync(`${l.work}/work`);
  fs.writeFileSync(`${l.work}/work/leftover`, 'from an earlier mount');
  fs.mkdirSync(`${l.root}/secret`, { mode: 0o000 });
  fs.mkdirSync(`${l.lower}/inner`);
  const up = `upperdir=${l.upper},workdir=${l.work}`;
  const cases: [string[], RegExp][] = [
    [['-o', `lowerdir=${l.root}/missing,${up}`, l.mnt], /missing: lowerdir does not exist/],
    [['-o', `lowerdir=${l.lower}:${l.root}/missing,${up}`, l.mnt], /missing: lowerdir does not exist/],
    [['-o', `lowerdir=${l.lower}/file,${up}`, l.mnt], /lowerdir is not a directory/],
    [['-o', `lowerdir=${l.lower},upperdir=${l.root}/nope,workdir=${l.work}`, l.mnt], /upperdir does not exist/],
    [['-o', `lowerdir=${l.lower},upperdir=${l.upper},workdir=${l.root}/nope`, l.mnt], /workdir does not exist/],
    [['-o', `lowerdir=${l.lower},upperdir=${l.lower},workdir=${l.work}`, l.mnt], /upperdir and lowerdir .* overlap/],
    [['-o', `lowerdir=${l.lower},upperdir=${l.lower}/inner,workdir=${l.work}`, l.mnt], /upperdir and lowerdir .* overlap/],
    [['-o', `lowerdir=${l.root},${up}`, l.mnt], /upperdir and lowerdir .* overlap/],
    [['-o', `lowerdir=${l.lower},upperdir=${l.upper},workdir=${l.lower}/inner`, l.mnt], /workdir and lowerdir .* overlap/],
    [['-o', `lowerdir=${l.lower},upperdir=${l.upper},workdir=${l.upper}`, l.mnt], /workdir must not be inside the upperdir/],
    [['-o', `lowerdir=${l.lower},${up}`, `${l.root}/nomnt`], /mountpoint .* does not exist/],
    [['-o', `lowerdir=${l.lower},${up}`, `${l.lower}/file`], /not a directory/],
  ];
  for (const [args, pattern] of cases) expectRefused(t, l, args, pattern);
});

t.test('an unreadable lowerdir is refused (checked as an ordinary user)', async (t) => {
  const l = makeLayers(t, 'badperm');
  fs.mkdirSync(`${l.root}/closed`, { mode: 0o700 });
  fs.chmodSync(l.mnt, 0o777);
  const before = fingerprint(l.root);
  const [cmd, argv] = plainExec([STRATAFS_BIN, '-o', `lowerdir=${l.root}/closed`, l.mnt]);
  const r = spawnSync(cmd, argv, { encoding: 'utf8', uid: 65534, gid: 65534, timeout: 30_000 });
  t.not(r.status, 0);
  t.match(r.stderr, /closed: lowerdir is not readable/, r.stderr.trim());
  t.equal(r.stderr.trim().split('\n').length, 1, 'one line');
  t.notOk(isMounted(l.mnt));
  t.equal(fingerprint(l.root), before, 'nothing changed on disk');
});

t.test('workdir on another filesystem, upper without xattrs, busy mountpoint', async (t) => {
  const l = makeLayers(t, 'badfs');
  const tmpfs = `${l.root}/tmpfs`;
  fs.mkdirSync(tmpfs);
  t.equal(spawnSync('mount', ['-t', 'tmpfs', 'tmpfs', tmpfs]).status, 0, 'tmpfs mounted');
  t.teardown(() => {
    spawnSync('umount', [tmpfs]);
  });
  fs.mkdirSync(`${tmpfs}/work`);
  expectRefused(t, l, ['-o', `lowerdir=${l.lower},upperdir=${l.upper},workdir=${tmpfs}/work`, l.mnt],
    /workdir must be on the same filesystem as the upperdir/);
  const ramfs = `${l.root}/ramfs`;
  fs.mkdirSync(ramfs);
  t.equal(spawnSync('mount', ['-t', 'ramfs', 'ramfs', ramfs]).status, 0, 'ramfs (no xattrs) mounted');
  t.teardown(() => {
    spawnSync('umount', [ramfs]);
  });
  fs.mkdirSync(`${ramfs}/upper`);
  fs.mkdirSync(`${ramfs}/work`);
  expectRefused(t, l, ['-o', `lowerdir=${l.lower},upperdir=${ramfs}/upper,workdir=${ramfs}/work`, l.mnt],
    /cannot set trusted\.overlay\.\* xattrs/);
  // a live mount on the mountpoint: refused, the mount stays as it was
  t.equal((await mountWith(l)).code, 0, 'first mount');
  const r = cli(['-o', `lowerdir=${l.lower},upperdir=${l.upper},workdir=${l.work}`, l.mnt]);
  t.not(r.code, 0, 'second mount on the same mountpoint refused');
  t.match(r.stderr, /is busy: fuse\.stratafs is mounted there/, r.stderr.trim());
  t.equal(r.stderr.trim().split('\n').length, 1, 'one line');
  const lines = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((x) => x.split(' ')[4] === l.mnt);
  t.equal(lines.length, 1, 'still exactly one mount there');
});
