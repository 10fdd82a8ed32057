/**
 * Features through a real mount, each driven from a child process (python3 for the
 * syscalls the shell tools do not reach: renameat2 flags, SEEK_DATA/SEEK_HOLE,
 * fallocate, getdents in pieces), checked in the merged view and in the layers.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const BIN = path.resolve(__dirname, '..', '..', 'bin', 'stratafs');

function sh(cmd: string, opts: { uid?: number; gid?: number } = {}): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync('/bin/sh', ['-c', cmd], { encoding: 'utf8', uid: opts.uid, gid: opts.gid });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function py(code: string, ...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync('python3', ['-c', code, ...args], { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function isMounted(mnt: string): boolean {
  return fs.readFileSync('/proc/mounts', 'utf8').split('\n').some((l) => l.split(' ')[1] === mnt);
}

interface Mount {
  root: string;
  lower: string;
  lower2: string;
  upper: string;
  work: string;
  mnt: string;
}

/** Layers: lower2 (bottom) and lower (top), built by `populate`, then a stratafs mount. */
function mounted(t: tap.Test, populate: (m: Mount) => void, extra = ''): Mount {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'stratafs-feat-'));
  fs.chmodSync(root, 0o755); // tests run commands as other users too
  const m: Mount = {
    root,
    lower: path.join(root, 'lower'),
    lower2: path.join(root, 'lower2'),
    upper: path.join(root, 'upper'),
    work: path.join(root, 'work'),
    mnt: path.join(root, 'mnt'),
  };
  for (const d of [m.lower, m.lower2, m.upper, m.work, m.mnt]) fs.mkdirSync(d);
  t.teardown(() => {
    for (let i = 0; i < 3 && isMounted(m.mnt); i++) {
      spawnSync('fusermount3', ['-u', '-z', m.mnt]);
      if (isMounted(m.mnt)) spawnSync('umount', ['-l', m.mnt]);
    }
    fs.rmSync(root, { recursive: true, force: true });
  });
  populate(m);
  const opts = `lowerdir=${m.lower}:${m.lower2},upperdir=${m.upper},workdir=${m.work}${extra}`;
  const r = spawnSync(BIN, ['-o', opts, m.mnt], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`mount failed: ${r.stderr}`);
  return m;
}

t.test('union lookup, whiteout and copy-up seen in the layers', async (t) => {
  const m = mounted(t, (m) => {
    fs.mkdirSync(path.join(m.lower2, 'etc'));
    fs.writeFileSync(path.join(m.lower2, 'etc', 'issue'), 'base\n');
    fs.writeFileSync(path.join(m.lower2, 'etc', 'motd'), 'base motd\n');
    fs.mkdirSync(path.join(m.lower, 'etc'));
    fs.writeFileSync(path.join(m.lower, 'etc', 'motd'), 'app motd\n');
  });
  t.equal(sh(`cat ${m.mnt}/etc/motd`).stdout, 'app motd\n', 'top lower shadows the bottom one');
  t.equal(sh(`ls ${m.mnt}/etc`).stdout, 'issue\nmotd\n', 'directories merge');
  t.equal(sh(`rm ${m.mnt}/etc/issue`).status, 0);
  t.equal(sh(`ls ${m.mnt}/etc`).stdout, 'motd\n', 'removed name is gone');
  const wh = fs.lstatSync(path.join(m.upper, 'etc', 'issue'));
  t.ok(wh.isCharacterDevice() && wh.rdev === 0, 'upper holds a 0/0 whiteout');
  t.equal(fs.readFileSync(path.join(m.lower2, 'etc', 'issue'), 'utf8'), 'base\n', 'lower untouched');
  t.equal(sh(`echo more >> ${m.mnt}/etc/motd`).status, 0);
  t.equal(fs.readFileSync(path.join(m.upper, 'etc', 'motd'), 'utf8'), 'app motd\nmore\n', 'copied up and appended');
  t.equal(fs.readFileSync(path.join(m.lower, 'etc', 'motd'), 'utf8'), 'app motd\n', 'lower untouched');
});

t.test('reading never copies up; metadata changes do', async (t) => {
  const m = mounted(t, (m) => {
    fs.writeFileSync(path.join(m.lower, 'f'), 'data');
    fs.chmodSync(path.join(m.lower, 'f'), 0o644);
  });
  t.equal(sh(`cat ${m.mnt}/f >/dev/null && stat ${m.mnt}/f >/dev/null`).status, 0);
  t.same(fs.readdirSync(m.upper), [], 'nothing in the upper after reads');
  t.equal(sh(`chmod 600 ${m.mnt}/f`).status, 0);
  t.equal(fs.statSync(path.join(m.upper, 'f')).mode & 0o7777, 0o600, 'chmod copied up');
  t.equal(fs.readFileSync(path.join(m.upper, 'f'), 'utf8'), 'data');
});

t.test('renameat2 NOREPLACE and EXCHANGE', async (t) => {
  const m = mounted(t, (m) => {
    fs.writeFileSync(path.join(m.lower, 'a'), 'A');
    fs.writeFileSync(path.join(m.lower, 'b'), 'B');
  });
  const code = `
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD = -100
def r2(a, b, flags):
    if libc.renameat2(AT_FDCWD, a.encode(), AT_FDCWD, b.encode(), flags) != 0:
        return os.strerror(ctypes.get_errno())
    return 'ok'
d = sys.argv[1]
print(r2(d + '/a', d + '/b', 1))   # RENAME_NOREPLACE over an existing name
print(r2(d + '/a', d + '/b', 2))   # RENAME_EXCHANGE
print(open(d + '/a').read(), open(d + '/b').read())
`;
  const r = py(code, m.mnt);
  t.equal(r.status, 0, r.stderr);
  t.same(r.stdout.trim().split('\n'), ['File exists', 'ok', 'B A']);
});

t.test('directory renamed from a lower keeps its contents (redirect)', async (t) => {
  const m = mounted(t, (m) => {
    fs.mkdirSync(path.join(m.lower, 'dir'));
    fs.writeFileSync(path.join(m.lower, 'dir', 'x'), 'x');
  });
  t.equal(sh(`mkdir ${m.mnt}/sub && mv ${m.mnt}/dir ${m.mnt}/sub/moved`).status, 0);
  t.equal(sh(`cat ${m.mnt}/sub/moved/x`).stdout, 'x');
  t.equal(sh(`ls ${m.mnt}`).stdout, 'sub\n');
});

t.test('sparse files: SEEK_DATA/SEEK_HOLE, fallocate, holes survive copy-up', async (t) => {
  const m = mounted(t, (m) => {
    const fd = fs.openSync(path.join(m.lower, 'sparse'), 'w');
    fs.writeSync(fd, 'head', 0);
    fs.writeSync(fd, 'tail', 64 * 1024 * 1024);
    fs.closeSync(fd);
  });
  const code = `
import os, sys
p = sys.argv[1] + '/sparse'
fd = os.open(p, os.O_RDWR)
print(os.lseek(fd, 0, os.SEEK_HOLE) < 64 * 1024 * 1024)
print(os.lseek(fd, 4096, os.SEEK_DATA) >= 4096)
os.posix_fallocate(fd, 0, 4096)
os.pwrite(fd, b'HEAD', 0)
os.close(fd)
print(open(p, 'rb').read(4))
`;
  const r = py(code, m.mnt);
  t.equal(r.status, 0, r.stderr);
  t.same(r.stdout.trim().split('\n'), ['True', 'True', "b'HEAD'"]);
  const st = fs.statSync(path.join(m.upper, 'sparse'));
  t.equal(st.size, 64 * 1024 * 1024 + 4, 'size kept');
  t.ok(st.blocks * 512 < 8 * 1024 * 1024, `holes stayed holes (${st.blocks} blocks)`);
});

t.test('xattrs and ACLs; private overlay xattrs stay hidden', async (t) => {
  const m = mounted(t, (m) => {
    fs.mkdirSync(path.join(m.lower, 'opq'));
    fs.writeFileSync(path.join(m.lower, 'f'), 'f');
    spawnSync('setfattr', ['-n', 'user.color', '-v', 'blue', path.join(m.lower, 'f')]);
  });
  t.equal(sh(`getfattr --only-values -n user.color ${m.mnt}/f`).stdout, 'blue');
  t.equal(sh(`setfattr -n user.size -v big ${m.mnt}/f`).status, 0);
  t.equal(sh(`setfacl -m u:1234:r ${m.mnt}/f`).status, 0, 'setfacl');
  t.match(sh(`getfacl -n ${m.mnt}/f`).stdout, /user:1234:r--/, 'ACL reads back');
  t.equal(sh(`rmdir ${m.mnt}/opq && mkdir ${m.mnt}/opq`).status, 0, 'a new dir over a removed lower dir');
  const all = sh(`getfattr -h -d -m - ${m.mnt}/opq ${m.mnt}/f`).stdout;
  t.notMatch(all, /overlay\./, 'no overlay.* xattr visible');
  t.match(sh(`getfattr -h -d -m - ${m.upper}/opq`).stdout, /trusted\.overlay\.opaque="y"/, 'the upper dir is opaque');
});

t.test('new files belong to the caller; setgid dirs pass their group on', async (t) => {
  const m = mounted(t, (m) => {
    fs.mkdirSync(path.join(m.lower, 'pub'), { mode: 0o777 });
    fs.chmodSync(path.join(m.lower, 'pub'), 0o777);
    fs.mkdirSync(path.join(m.lower, 'grp'));
    fs.chownSync(path.join(m.lower, 'grp'), 0, 4321);
    fs.chmodSync(path.join(m.lower, 'grp'), 0o2777);
  });
  t.equal(sh(`touch ${m.mnt}/pub/mine`, { uid: 1000, gid: 1000 }).status, 0);
  const st = fs.statSync(path.join(m.mnt, 'pub', 'mine'));
  t.equal(st.uid, 1000);
  t.equal(st.gid, 1000);
  t.equal(sh(`touch ${m.mnt}/grp/f && mkdir ${m.mnt}/grp/d`, { uid: 1000, gid: 1000 }).status, 0);
  t.equal(fs.statSync(path.join(m.mnt, 'grp', 'f')).gid, 4321, 'file takes the setgid dir group');
  const d = fs.statSync(path.join(m.mnt, 'grp', 'd'));
  t.equal(d.gid, 4321, 'dir takes the group');
  t.ok(d.mode & 0o2000, 'and stays setgid');
});

t.test('a big directory read in pieces lists each name once', async (t) => {
  const m = mounted(t, (m) => {
    fs.mkdirSync(path.join(m.lower2, 'big'));
    fs.mkdirSync(path.join(m.lower, 'big'));
    for (let i = 0; i < 3000; i++) fs.writeFileSync(path.join(i % 2 ? m.lower : m.lower2, 'big', `f${i}`), '');
  });
  t.equal(sh(`rm ${m.mnt}/big/f7 ${m.mnt}/big/f8`).status, 0);
  const names = sh(`ls -f ${m.mnt}/big`).stdout.trim().split('\n').filter((n) => n !== '.' && n !== '..');
  t.equal(names.length, 2998);
  t.equal(new Set(names).size, names.length, 'no duplicates');
  t.notOk(names.includes('f7'), 'whited-out name hidden');
});

t.test('a hostile layer cannot reach the host', async (t) => {
  const canary = fs.mkdtempSync(path.join(os.tmpdir(), 'stratafs-canary-'));
  t.teardown(() => fs.rmSync(canary, { recursive: true, force: true }));
  fs.writeFileSync(path.join(canary, 'secret'), 'host data\n');
  fs.chmodSync(canary, 0o755);
  const m = mounted(t, (m) => {
    fs.symlinkSync(canary, path.join(m.lower, 'escape'));
    fs.symlinkSync('../../../../../../../..' + canary, path.join(m.lower, 'rel'));
    // an upper dir whose redirect points out of the layer: must not list the host dir
    fs.mkdirSync(path.join(m.upper, 'redir'));
    spawnSync('setfattr', ['-n', 'trusted.overlay.redirect', '-v', '/../../../../../../..' + canary, path.join(m.upper, 'redir')]);
  });
  // operations on the symlinks themselves (no-follow) must change the links in the
  // upper layer, never what they point to
  t.equal(sh(`chown -h 1:1 ${m.mnt}/escape ${m.mnt}/rel`).status, 0, 'chown -h on the links');
  t.equal(fs.lstatSync(path.join(m.upper, 'escape')).uid, 1, 'the link was copied up and chowned');
  t.ok(fs.lstatSync(path.join(m.upper, 'rel')).isSymbolicLink(), 'copy-up kept it a link');
  t.equal(sh(`readlink ${m.mnt}/escape`).stdout.trim(), canary, 'readlink gives the value');
  t.notMatch(sh(`ls -a ${m.mnt}/redir`).stdout, /secret/, 'a redirect out of the layer shows nothing of the host');
  t.not(sh(`cat ${m.mnt}/redir/secret`).status, 0, 'nor opens host files');
  const st = fs.statSync(canary);
  t.equal(st.uid, 0, 'canary dir owner intact');
  t.equal(st.mode & 0o777, 0o755, 'canary dir mode intact');
  t.equal(fs.readFileSync(path.join(canary, 'secret'), 'utf8'), 'host data\n', 'canary content intact');
  t.same(fs.readdirSync(canary), ['secret'], 'nothing created on the host');
});

t.test('hard links, fifos, device nodes, statfs, fsync', async (t) => {
  const m = mounted(t, (m) => {
    fs.writeFileSync(path.join(m.lower, 'f'), 'linked');
  });
  t.equal(sh(`ln ${m.mnt}/f ${m.mnt}/g && ln ${m.mnt}/g ${m.mnt}/h`).status, 0, 'link a lower file twice');
  t.equal(sh(`stat -c %h ${m.mnt}/f ${m.mnt}/g ${m.mnt}/h`).stdout, '3\n3\n3\n', 'nlink 3 on every name');
  t.equal(sh(`echo more >> ${m.mnt}/g && cat ${m.mnt}/f`).stdout, 'linkedmore\n', 'one inode behind the names');
  t.equal(sh(`rm ${m.mnt}/h && stat -c %h ${m.mnt}/f`).stdout, '2\n');
  t.equal(sh(`mkfifo ${m.mnt}/fifo && mknod ${m.mnt}/null c 1 3 && stat -c '%F %t:%T' ${m.mnt}/fifo ${m.mnt}/null`).stdout,
    'fifo 0:0\ncharacter special file 1:3\n');
  t.ok(fs.lstatSync(path.join(m.upper, 'fifo')).isFIFO(), 'fifo in the upper');
  const df = sh(`stat -f -c '%b %S' ${m.mnt} ${m.upper}`).stdout.trim().split('\n');
  t.equal(df[0], df[1], 'statfs reports the upper filesystem');
  const r = py(`
import os, sys
fd = os.open(sys.argv[1] + '/synced', os.O_CREAT | os.O_WRONLY, 0o644)
os.write(fd, b'durable')
os.fsync(fd)
os.fdatasync(fd)
os.close(fd)
dfd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)
os.fsync(dfd)
os.close(dfd)
print('ok')
`, m.mnt);
  t.equal(r.stdout.trim(), 'ok', r.stderr);
  t.equal(fs.readFileSync(path.join(m.upper, 'synced'), 'utf8'), 'durable');
});

t.test('a directory listing stays consistent while entries are removed', async (t) => {
  const m = mounted(t, (m) => {
    fs.mkdirSync(path.join(m.lower, 'd'));
    for (let i = 0; i < 500; i++) fs.writeFileSync(path.join(m.lower, 'd', `n${String(i).padStart(3, '0')}`), '');
  });
  // read part of the directory, delete entries (already listed and not yet listed), read on
  const r = py(`
import os, sys
d = sys.argv[1] + '/d'
seen = []
with os.scandir(d) as it:
    for i, e in enumerate(it):
        seen.append(e.name)
        if i == 100:
            for n in ('n000', 'n001', 'n499', 'n498'):
                os.unlink(os.path.join(d, n))
print(len(seen), len(set(seen)))
print(len(os.listdir(d)))
`, m.mnt);
  t.equal(r.status, 0, r.stderr);
  const [counts, after] = r.stdout.trim().split('\n');
  const [total, unique] = counts.split(' ').map(Number);
  t.equal(total, unique, 'no name listed twice');
  t.ok(total >= 496 && total <= 500, `every name that stayed is listed once (${total})`);
  t.equal(after, '496', 'a fresh listing shows the removals');
});

t.test('read-only mounts refuse changes with EROFS', async (t) => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'stratafs-ro-'));
  const lower = path.join(root, 'lower');
  const mnt = path.join(root, 'mnt');
  fs.mkdirSync(lower);
  fs.mkdirSync(mnt);
  fs.writeFileSync(path.join(lower, 'f'), 'ro');
  t.teardown(() => {
    for (let i = 0; i < 3 && isMounted(mnt); i++) spawnSync('umount', ['-l', mnt]);
    fs.rmSync(root, { recursive: true, force: true });
  });
  const r = spawnSync(BIN, ['-o', `lowerdir=${lower}`, mnt], { encoding: 'utf8' });
  t.equal(r.status, 0, r.stderr);
  t.equal(sh(`cat ${mnt}/f`).stdout, 'ro');
  for (const cmd of [`touch ${mnt}/new`, `rm ${mnt}/f`, `echo x >> ${mnt}/f`, `chmod 600 ${mnt}/f`, `mkdir ${mnt}/d`]) {
    const res = sh(cmd);
    t.not(res.status, 0, `${cmd} fails`);
    t.match(res.stderr, /Read-only file system/, `${cmd}: EROFS`);
  }
  t.equal(fs.readFileSync(path.join(lower, 'f'), 'utf8'), 'ro', 'lower unchanged');
  t.same(fs.readdirSync(lower), ['f']);
});

t.test('uid/gid mappings as fuse-overlayfs reads them: C:H:N shows on-disk id C as H', async (t) => {
  const m = mounted(t, (m) => {
    fs.writeFileSync(path.join(m.lower, 'owned'), 'x');
    fs.chownSync(path.join(m.lower, 'owned'), 0, 7);
  }, ',uidmapping=0:100000:65536,gidmapping=0:100000:65536');
  t.equal(sh(`stat -c %u:%g ${m.mnt}/owned`).stdout, '100000:100007\n', 'on-disk 0:7 shows as 100000:100007');
  t.equal(sh(`touch ${m.mnt}/new && chown 100005:100006 ${m.mnt}/owned`).status, 0);
  const chowned = fs.statSync(path.join(m.upper, 'owned'));
  t.same([chowned.uid, chowned.gid], [5, 6], 'chown 100005:100006 lands as 5:6 on disk');
  t.equal(sh(`stat -c %u:%g ${m.mnt}/owned`).stdout, '100005:100006\n');
  // host root is outside the shown range: its file is stored as the overflow id, as
  // fuse-overlayfs stores it (seen side by side with the same options)
  const created = fs.statSync(path.join(m.upper, 'new'));
  t.same([created.uid, created.gid], [65534, 65534], 'a file an unmapped caller creates is stored as 65534');
});
