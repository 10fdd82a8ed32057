import t from 'tap';
import { parseArgs, splitOptionList, splitLayerList, parseIdMapping } from '../../src/mount/options';
import { StratafsError } from '../../src/errors';

function mount(argv: string[], cwd = '/srv') {
  const cmd = parseArgs(argv, cwd);
  if (cmd.kind !== 'mount') throw new Error(`expected a mount command, got ${cmd.kind}`);
  return cmd.options;
}

function refused(t: tap.Test, argv: string[], pattern: RegExp, code: string): void {
  try {
    parseArgs(argv, '/srv');
    t.fail(`accepted ${argv.join(' ')}`);
  } catch (e) {
    t.ok(e instanceof StratafsError, 'a StratafsError');
    t.equal((e as StratafsError).code, code);
    t.match((e as Error).message, pattern);
    t.notMatch((e as Error).message, /\n/, 'one line');
  }
}

t.test('fuse-overlayfs style argv as podman sends it', async (t) => {
  const o = mount([
    '-o',
    'lowerdir=l/AAA:l/BBB,upperdir=/var/lib/c/over/ID/diff,workdir=/var/lib/c/over/ID/work,,volatile,context="system_u:object_r:container_file_t:s0:c1,c2"',
    '/var/lib/c/over/ID/merged',
  ], '/var/lib/c/over');
  t.same(o.lowerdirs, ['/var/lib/c/over/l/AAA', '/var/lib/c/over/l/BBB'], 'relative lowers resolve against cwd, top first');
  t.equal(o.upperdir, '/var/lib/c/over/ID/diff');
  t.equal(o.workdir, '/var/lib/c/over/ID/work');
  t.equal(o.mountpoint, '/var/lib/c/over/ID/merged');
  t.equal(o.volatile, true);
  t.equal(o.readOnly, false);
  t.equal(o.foreground, false, 'detaches by default');
  t.ok(o.ignored.some((x) => x.startsWith('context=')), 'context accepted without effect');
});

t.test('read-only mounts', async (t) => {
  t.equal(mount(['-o', 'lowerdir=/a:/b', '/m']).readOnly, true, 'no upperdir = read-only');
  t.equal(mount(['-o', 'lowerdir=/a,upperdir=/u,workdir=/w,ro', '/m']).readOnly, true);
});

t.test('flags, repeated -o and -oOPTS', async (t) => {
  const o = mount(['-f', '-o', 'lowerdir=/a', '-oupperdir=/u', '-o', 'workdir=/w,timeout=30', '/m']);
  t.equal(o.foreground, true);
  t.equal(o.upperdir, '/u');
  t.equal(o.timeout, 30);
  const d = mount(['-d', '-o', 'lowerdir=/a', '/m']);
  t.equal(d.debug, true);
  t.equal(d.foreground, true, '-d implies -f');
});

t.test('metacopy=on|off, off by default', async (t) => {
  t.equal(mount(['-o', 'lowerdir=/a', '/m']).metacopy, false);
  t.equal(mount(['-o', 'lowerdir=/a,upperdir=/u,workdir=/w,metacopy=on', '/m']).metacopy, true);
  t.equal(mount(['-o', 'lowerdir=/a,metacopy=off', '/m']).metacopy, false);
  refused(t, ['-o', 'lowerdir=/a,metacopy=yes', '/m'], /metacopy takes on or off/, 'STRATAFS_ERR_OPTION');
  refused(t, ['-o', 'lowerdir=/a,metacopy', '/m'], /metacopy needs a value/, 'STRATAFS_ERR_OPTION');
});

t.test('id mappings and squash', async (t) => {
  const o = mount(['-o', 'lowerdir=/a,uidmapping=0:100000:65536,gidmapping=0:100000:1:1:200000:10,squash_to_gid=5', '/m']);
  // fuse-overlayfs' meaning: DISK:SHOWN:COUNT (layer id 0 appears as 100000)
  t.same(o.uidMap, [{ host: 0, inside: 100000, count: 65536 }]);
  t.same(o.gidMap, [{ host: 0, inside: 100000, count: 1 }, { host: 1, inside: 200000, count: 10 }]);
  t.equal(o.squashToGid, 5);
  t.throws(() => parseIdMapping('uidmapping', '0:1'), /triples/);
  // containers-storage's form: a leading ':' and ranges joined by ':'
  t.same(parseIdMapping('uidmapping', ':0:100000:1:1:200000:10'), [{ host: 0, inside: 100000, count: 1 }, { host: 1, inside: 200000, count: 10 }]);
  t.throws(() => parseIdMapping('uidmapping', '::0:100000:1'), /triples/);
  t.throws(() => parseIdMapping('uidmapping', '0:4294967295:2'), /past the largest id/);
});

t.test('version and help', async (t) => {
  t.equal(parseArgs(['--version']).kind, 'version');
  t.equal(parseArgs(['-h']).kind, 'help');
});

t.test('option list splitting', async (t) => {
  t.same(splitOptionList('a,,b=1,c="x,y",d\\,e'), ['a', 'b=1', 'c=x,y', 'd\\,e']);
  t.same(splitLayerList('/a\\:b:/c'), ['/a:b', '/c']);
});

t.test('mount.fuse3 form: SOURCE MOUNTPOINT -o OPTIONS, with the options mount.fuse3 adds', async (t) => {
  // what mount.fuse3 runs for containerd's fuse3.stratafs mounts (the source is ignored)
  const c = parseArgs(['stratafs', '/run/m', '-o', 'lowerdir=/l2:/l1,upperdir=/u,workdir=/w,rw,dev,suid']);
  if (c.kind !== 'mount') throw new Error('not a mount');
  t.equal(c.options.mountpoint, '/run/m');
  t.same(c.options.lowerdirs, ['/l2', '/l1']);
  t.equal(c.options.upperdir, '/u');
  t.equal(c.options.readOnly, false);
});

t.test('misuse gets one clear line', async (t) => {
  refused(t, [], /no mountpoint/, 'STRATAFS_ERR_USAGE');
  refused(t, ['/m'], /lowerdir= is required/, 'STRATAFS_ERR_OPTION');
  refused(t, ['-o', 'lowerdir=/a,upperdir=/u', '/m'], /needs workdir/, 'STRATAFS_ERR_OPTION');
  refused(t, ['-o', 'lowerdir=/a,workdir=/w', '/m'], /without upperdir/, 'STRATAFS_ERR_OPTION');
  refused(t, ['-o', 'lowerdir=/a,bogus=1', '/m'], /unknown option "bogus"/, 'STRATAFS_ERR_OPTION');
  refused(t, ['-o', 'lowerdir=/a', '-o', 'lowerdir=/b', '/m'], /lowerdir is given twice/, 'STRATAFS_ERR_OPTION');
  refused(t, ['-o', 'lowerdir=/a::/b', '/m'], /empty entry/, 'STRATAFS_ERR_OPTION');
  refused(t, ['-o', 'lowerdir=/a', '/s', '/m', '/n'], /one mountpoint expected/, 'STRATAFS_ERR_USAGE');
  refused(t, ['-x', '/m'], /unknown flag "-x"/, 'STRATAFS_ERR_USAGE');
  refused(t, ['-o', 'lowerdir=/a,xattr_permissions=2', '/m'], /xattr_permissions=2 is not supported/, 'STRATAFS_ERR_OPTION');
  refused(t, ['-o', 'lowerdir=/a,timeout=x', '/m'], /timeout needs a number/, 'STRATAFS_ERR_OPTION');
  refused(t, ['-o', 'lowerdir=/a,context="x', '/m'], /unbalanced quote/, 'STRATAFS_ERR_OPTION');
  refused(t, ['-o'], /-o needs an option list/, 'STRATAFS_ERR_USAGE');
});
