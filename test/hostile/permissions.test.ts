/**
 * Permissions as the kernel enforces them (default_permissions), checked as ordinary
 * users inside the mount (setpriv), on stratafs and on kernel overlayfs over the same
 * lowers: both must give the same results, and those must be the expected ones.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { forceUnmount, makeLayers, mountWith } from '../reliability/lib';

const ALICE = 1000;
const BOB = 2000;
const GROUP = 3000;

/** Runs as ALICE (the system python: one under root's home is out of reach); prints one "check result" line per step (errno names for failures). */
const AS_USER = `
import errno, os, stat, sys
m = sys.argv[1]
os.chdir(m)
def r(name, f):
    try:
        v = f()
        print(name, 'ok' if v is None else v)
    except OSError as e:
        print(name, errno.errorcode[e.errno])
def write(p, data=b'x', flags=os.O_WRONLY | os.O_CREAT):
    fd = os.open(p, flags, 0o644)
    os.write(fd, data)
    os.close(fd)
r('read-0600-root', lambda: open('private', 'rb').read() and None)
r('read-0644-root', lambda: open('public', 'rb').read().decode().strip())
r('write-0644-root', lambda: write('public', flags=os.O_WRONLY))
r('chmod-root-file', lambda: os.chmod('public', 0o666))
r('chown-root-file', lambda: os.chown('public', ${ALICE}, ${ALICE}))
r('list-0700-root-dir', lambda: os.listdir('closed') and None)
r('create-in-root-dir', lambda: write('newfile'))
r('sticky-unlink-others', lambda: os.unlink('tmp/bobs'))
r('sticky-rename-others', lambda: os.rename('tmp/bobs', 'tmp/mine-now'))
r('sticky-create-own', lambda: write('tmp/alices'))
r('own-file-ids', lambda: '%d:%d' % (os.stat('tmp/alices').st_uid, os.stat('tmp/alices').st_gid))
r('own-file-mode', lambda: oct(stat.S_IMODE(os.stat('tmp/alices').st_mode)))
r('sticky-unlink-own', lambda: os.unlink('tmp/alices'))
r('chown-own-to-bob', lambda: write('tmp/alices2') or os.chown('tmp/alices2', ${BOB}, -1))
r('setgid-file-group', lambda: write('sg/f') or os.stat('sg/f').st_gid)
r('setgid-dir', lambda: os.mkdir('sg/d') or '%d %s' % (os.stat('sg/d').st_gid, bool(os.stat('sg/d').st_mode & stat.S_ISGID)))
r('write-bobs-0666', lambda: write('tmp/shared', b'alice', os.O_WRONLY | os.O_APPEND))
r('read-bobs-0666', lambda: open('tmp/shared', 'rb').read().decode().replace('\\n', '|'))
`;

function populate(lower: string): void {
  fs.writeFileSync(`${lower}/private`, 'secret\n', { mode: 0o600 });
  fs.writeFileSync(`${lower}/public`, 'public\n', { mode: 0o644 });
  fs.mkdirSync(`${lower}/closed`, { mode: 0o700 });
  fs.writeFileSync(`${lower}/closed/x`, 'x');
  fs.mkdirSync(`${lower}/tmp`);
  fs.chmodSync(`${lower}/tmp`, 0o1777);
  fs.writeFileSync(`${lower}/tmp/bobs`, 'bob\n');
  fs.chownSync(`${lower}/tmp/bobs`, BOB, BOB);
  fs.writeFileSync(`${lower}/tmp/shared`, 'bob\n');
  fs.chmodSync(`${lower}/tmp/shared`, 0o666);
  fs.chownSync(`${lower}/tmp/shared`, BOB, BOB);
  fs.mkdirSync(`${lower}/sg`);
  fs.chownSync(`${lower}/sg`, 0, GROUP);
  fs.chmodSync(`${lower}/sg`, 0o2777);
}

function asAlice(mnt: string): string {
  const r = spawnSync('setpriv', ['--reuid', String(ALICE), '--regid', String(ALICE), '--clear-groups', '--', '/usr/bin/python3', '-c', AS_USER, mnt],
    { encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0) throw new Error(`as uid ${ALICE}: ${r.stderr}`);
  return r.stdout;
}

t.test('an ordinary user inside: same answers as kernel overlayfs, and the right ones', async (t) => {
  const l = makeLayers(t, 'perm');
  populate(l.lower);
  const m = await mountWith(l);
  t.equal(m.code, 0, m.stderr);
  const got = asAlice(l.mnt);
  forceUnmount(l.mnt);

  const k = { upper: `${l.root}/k-upper`, work: `${l.root}/k-work`, mnt: `${l.root}/k-mnt` };
  for (const d of Object.values(k)) fs.mkdirSync(d);
  const mk = spawnSync('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${l.lower},upperdir=${k.upper},workdir=${k.work},redirect_dir=on`, k.mnt]);
  t.equal(mk.status, 0, String(mk.stderr));
  t.teardown(() => {
    spawnSync('umount', [k.mnt]);
  });
  const oracle = asAlice(k.mnt);
  spawnSync('umount', [k.mnt]);
  t.equal(got, oracle, 'stratafs answers as kernel overlayfs does');

  const res = Object.fromEntries(got.trim().split('\n').map((line) => [line.slice(0, line.indexOf(' ')), line.slice(line.indexOf(' ') + 1)]));
  t.equal(res['read-0600-root'], 'EACCES', 'cannot read a 0600 root file from a lower layer');
  t.equal(res['read-0644-root'], 'public', 'can read a 0644 one');
  t.equal(res['write-0644-root'], 'EACCES');
  t.equal(res['chmod-root-file'], 'EPERM');
  t.equal(res['chown-root-file'], 'EPERM');
  t.equal(res['list-0700-root-dir'], 'EACCES');
  t.equal(res['create-in-root-dir'], 'EACCES');
  t.equal(res['sticky-unlink-others'], 'EPERM', "cannot delete another user's file in a sticky dir");
  t.equal(res['sticky-rename-others'], 'EPERM', 'nor rename it');
  t.equal(res['sticky-create-own'], 'ok');
  t.equal(res['own-file-ids'], `${ALICE}:${ALICE}`, "a new file gets the caller's uid and gid");
  t.equal(res['sticky-unlink-own'], 'ok', 'and its owner may delete it');
  t.equal(res['chown-own-to-bob'], 'EPERM');
  t.equal(res['setgid-file-group'], String(GROUP), "a setgid dir passes its group to new files");
  t.equal(res['setgid-dir'], `${GROUP} True`, 'and to new dirs, with the setgid bit');
  t.equal(res['write-bobs-0666'], 'ok');
  t.equal(res['read-bobs-0666'], 'bob|alice');
  t.equal(fs.readFileSync(`${l.lower}/tmp/shared`, 'utf8'), 'bob\n', 'the lower file is untouched');
  t.equal(fs.statSync(`${l.upper}/tmp/shared`).uid, BOB, 'the copy-up kept the owner');
});
