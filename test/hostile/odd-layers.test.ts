/**
 * Odd but legal layer contents through a mount: `.wh.` names, names with newlines and
 * of 255 bytes, `..`-looking names and non-UTF-8 bytes, a tree deeper than PATH_MAX,
 * a directory of 100k entries, a sparse file past 4 GiB, device nodes, fifos, sockets,
 * setuid/setgid files, a file with many xattrs and an ACL. Each is read through the
 * mount and copied up, and the upper copy checked on the host.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { forceUnmount, makeLayers, mountWith, py } from '../reliability/lib';

/** Builds the lower layer (python: deep paths by chdir, sockets, byte names). */
const BUILD = `
import os, socket, stat, sys
lower = sys.argv[1]
os.chdir(lower)
for n in [b'.wh.hidden-by-aufs', b'shown', b'two\\nlines', b'x' * 255, b'...', b'..a', b' ..', b'.. ', b'\\xff\\xfe-latin1', b'back\\\\slash']:
    with open(n, 'wb') as f:
        f.write(b'content of ' + n)
open(os.path.join(sys.argv[2], 'hidden-by-aufs'), 'w').close()
os.mkdir('deep')
os.chdir('deep')
depth = 0
while depth < 24:
    os.mkdir('d' * 200)
    os.chdir('d' * 200)
    depth += 1
with open('bottom', 'wb') as f:
    f.write(b'deep data')
os.chdir(lower)
os.mkdir('big')
for i in range(100000):
    os.close(os.open('big/f%d' % i, os.O_CREAT | os.O_WRONLY, 0o644))
with open('sparse', 'wb') as f:
    f.truncate(5 << 30)
    f.seek((4 << 30) + 12345)
    f.write(b'past four GiB')
os.mknod('null', 0o666 | stat.S_IFCHR, os.makedev(1, 3))
os.mknod('loop', 0o660 | stat.S_IFBLK, os.makedev(7, 200))
os.mkfifo('fifo')
s = socket.socket(socket.AF_UNIX)
s.bind(os.path.join(lower, 'sock'))
s.close()
for n, mode in [('suid', 0o4755), ('sgid', 0o2755)]:
    open(n, 'w').close()
    os.chmod(n, mode)
open('xattrs', 'w').close()
for i in range(60):
    os.setxattr('xattrs', 'user.attr%03d' % i, b'value %d' % i)
`;

/** Checks through the mount; prints one line per check: name ok|detail. */
const CHECK = `
import os, stat, sys
m = sys.argv[1]
os.chdir(m)
out = []
def check(name, cond, detail=''):
    out.append('%s %s' % (name, 'ok' if cond else 'FAIL ' + str(detail)))
names = set(os.listdir(b'.'))
check('aufs-whiteout-hides', b'hidden-by-aufs' not in names and b'.wh.hidden-by-aufs' not in names, names)
for n in [b'shown', b'two\\nlines', b'x' * 255, b'...', b'..a', b' ..', b'.. ', b'\\xff\\xfe-latin1', b'back\\\\slash']:
    ok = n in names and open(n, 'rb').read() == b'content of ' + n
    check('name-' + repr(n)[:20], ok)
    with open(n, 'ab') as f:
        f.write(b'+')
try:
    open(b'y' * 256, 'w')
    check('name-256', False, 'created')
except OSError as e:
    check('name-256', e.errno == 36, e)
try:
    open('.wh.new', 'w')
    check('wh-create', False, 'created')
except OSError as e:
    check('wh-create', e.errno == 22, e)
os.chdir('deep')
depth = 0
while os.path.isdir('d' * 200):
    os.chdir('d' * 200)
    depth += 1
check('deep-depth', depth == 24, depth)
check('deep-read', open('bottom', 'rb').read() == b'deep data')
with open('bottom', 'ab') as f:
    f.write(b'+')
os.mkdir('newdir')
os.chdir(m)
n = sum(1 for _ in os.scandir('big'))
check('big-count', n == 100000, n)
os.unlink('big/f500')
os.rename('big/f501', 'big/renamed')
n2 = set(os.listdir('big'))
check('big-after', len(n2) == 99999 and 'f500' not in n2 and 'renamed' in n2, len(n2))
fd = os.open('sparse', os.O_RDWR)
check('sparse-size', os.fstat(fd).st_size == 5 << 30, os.fstat(fd).st_size)
check('sparse-read', os.pread(fd, 13, (4 << 30) + 12345) == b'past four GiB')
os.pwrite(fd, b'written later', (4 << 30) + 999999999)
check('sparse-hole', os.pread(fd, 4096, 1 << 30) == b'\\0' * 4096)
os.close(fd)
for name, kind in [('null', stat.S_ISCHR), ('loop', stat.S_ISBLK), ('fifo', stat.S_ISFIFO), ('sock', stat.S_ISSOCK)]:
    s = os.lstat(name)
    check('type-' + name, kind(s.st_mode), oct(s.st_mode))
    os.chown(name, 1234, 1234)
check('rdev-null', os.lstat('null').st_rdev == os.makedev(1, 3))
check('rdev-loop', os.lstat('loop').st_rdev == os.makedev(7, 200))
check('suid-mode', stat.S_IMODE(os.lstat('suid').st_mode) == 0o4755, oct(os.lstat('suid').st_mode))
check('sgid-mode', stat.S_IMODE(os.lstat('sgid').st_mode) == 0o2755)
os.utime('suid', (1000, 1000))
os.utime('sgid', (1000, 1000))
names = os.listxattr('xattrs')
check('xattr-count', len([x for x in names if x.startswith('user.attr')]) == 60, len(names))
check('acl-read', 'system.posix_acl_access' in names, names)
os.setxattr('xattrs', 'user.added', b'1')
print('\\n'.join(out))
`;

t.test('odd names, deep trees, big dirs, big sparse files, special files, xattrs', async (t) => {
  const l = makeLayers(t, 'odd');
  const bottom = `${l.root}/lower2`;
  fs.mkdirSync(bottom);
  const b = await py(BUILD, [l.lower, bottom], 300_000);
  t.equal(b.status, 0, b.stderr);
  t.equal(spawnSync('setfacl', ['-m', 'u:1234:rw,g:2345:r,u:3456:r', `${l.lower}/xattrs`]).status, 0, 'ACL set in the lower');
  l.lower = `${l.lower}:${bottom}`;
  const m = await mountWith(l);
  t.equal(m.code, 0, m.stderr);
  const r = await py(CHECK, [l.mnt], 300_000);
  t.equal(r.status, 0, r.stderr);
  const lines = r.stdout.trim().split('\n');
  t.equal(lines.length, 29, 'all checks ran');
  for (const line of lines) t.match(line, / ok$/, line);
  forceUnmount(l.mnt);

  // the copies in the upper, seen on the host
  const u = l.upper;
  t.equal(fs.readFileSync(`${u}/${'x'.repeat(255)}`, 'utf8'), `content of ${'x'.repeat(255)}+`, '255-byte name copied up');
  t.equal(fs.readFileSync(`${u}/two\nlines`, 'utf8'), 'content of two\nlines+', 'newline name copied up');
  t.ok(fs.readdirSync(u, { encoding: 'buffer' }).some((n) => n.equals(Buffer.from([0xff, 0xfe, ...Buffer.from('-latin1')]))), 'non-UTF-8 name kept byte for byte');
  const deep = py(`
import os, sys
os.chdir(sys.argv[1] + '/deep')
while os.path.isdir('d' * 200):
    os.chdir('d' * 200)
print(open('bottom').read(), os.path.isdir('newdir'))
`, [u]);
  t.equal((await deep).stdout.trim(), 'deep data+ True', 'the deep file and a new dir beside it, past PATH_MAX, in the upper');
  const sp = fs.statSync(`${u}/sparse`);
  t.equal(sp.size, 5 * 2 ** 30, 'sparse copy keeps its size');
  t.ok(sp.blocks * 512 < 64 << 20, `and stays sparse (${sp.blocks * 512} bytes allocated)`);
  const null_ = fs.lstatSync(`${u}/null`);
  t.ok(null_.isCharacterDevice() && null_.uid === 1234, 'device node copied up as a device node');
  t.ok(fs.lstatSync(`${u}/fifo`).isFIFO(), 'fifo copied up as a fifo');
  t.ok(fs.lstatSync(`${u}/sock`).isSocket(), 'socket copied up as a socket');
  t.equal(fs.statSync(`${u}/suid`).mode & 0o7777, 0o4755, 'setuid bit kept on copy-up');
  t.equal(fs.statSync(`${u}/sgid`).mode & 0o7777, 0o2755, 'setgid bit kept on copy-up');
  const attrs = spawnSync('getfattr', ['-d', '-m', '-', `${u}/xattrs`], { encoding: 'utf8' }).stdout;
  t.equal((attrs.match(/^user\.attr\d+=/gm) ?? []).length, 60, 'all 60 xattrs copied up');
  t.match(spawnSync('getfacl', ['-p', `${u}/xattrs`], { encoding: 'utf8' }).stdout, /user:1234:rw-/, 'the ACL copied up');
  t.notOk(fs.existsSync(`${u}/.wh.new`), 'no .wh. name created');
});
