/**
 * A mount made by an ordinary user: the fusermount3 handshake hands the device fd over,
 * the private xattrs live under `user.overlay.`, whiteouts are still 0/0 devices
 * (Linux allows unprivileged whiteout creation since 5.8), and the user unmounts with
 * fusermount3 -u.
 *
 * fusermount3 opens /dev/fuse with the caller's rights: distributions ship it 0666. On a
 * machine where it is 0600 this test makes it 0666 for its duration and restores the
 * mode afterwards.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const BIN = path.resolve(__dirname, '..', '..', 'bin', 'stratafs');
const USER = 'nobody';

function asUser(cmd: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync('setpriv', ['--reuid', USER, '--regid', 'nogroup', '--clear-groups', ...cmd], {
    encoding: 'utf8',
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: '/tmp' },
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function isMounted(mnt: string): boolean {
  return fs.readFileSync('/proc/mounts', 'utf8').split('\n').some((l) => l.split(' ')[1] === mnt);
}

t.test('an unprivileged user mounts, writes, deletes and unmounts', async (t) => {
  const devMode = fs.statSync('/dev/fuse').mode & 0o777;
  if ((devMode & 0o006) !== 0o006) {
    fs.chmodSync('/dev/fuse', 0o666);
    t.teardown(() => fs.chmodSync('/dev/fuse', devMode));
  }
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'stratafs-user-'));
  const [lower, upper, work, mnt] = ['lower', 'upper', 'work', 'mnt'].map((d) => path.join(root, d));
  for (const d of [lower, upper, work, mnt]) fs.mkdirSync(d);
  fs.writeFileSync(path.join(lower, 'f'), 'hi\n');
  fs.writeFileSync(path.join(lower, 'g'), 'bye\n');
  fs.mkdirSync(path.join(lower, 'dir'));
  fs.writeFileSync(path.join(lower, 'dir', 'x'), '');
  spawnSync('chown', ['-R', `${USER}:nogroup`, root]);
  fs.chmodSync(root, 0o755);
  t.teardown(() => {
    for (let i = 0; i < 3 && isMounted(mnt); i++) spawnSync('umount', ['-l', mnt]);
    fs.rmSync(root, { recursive: true, force: true });
  });

  const m = asUser([BIN, '-o', `lowerdir=${lower},upperdir=${upper},workdir=${work}`, mnt]);
  t.equal(m.status, 0, `mounted as ${USER}: ${m.stderr}`);
  const line = fs.readFileSync('/proc/mounts', 'utf8').split('\n').find((l) => l.split(' ')[1] === mnt) ?? '';
  t.match(line, /fuse\.stratafs/, 'a stratafs mount');
  t.match(line, /user_id=65534/, 'owned by the user');

  const r = asUser(['sh', '-c', `cat ${mnt}/f && echo more >> ${mnt}/f && rm ${mnt}/g && rm -r ${mnt}/dir && mkdir ${mnt}/dir && ls ${mnt}`]);
  t.equal(r.status, 0, r.stderr);
  t.equal(r.stdout, 'hi\ndir\nf\n');
  t.equal(fs.readFileSync(path.join(upper, 'f'), 'utf8'), 'hi\nmore\n', 'copied up');
  const wh = fs.lstatSync(path.join(upper, 'g'));
  t.ok(wh.isCharacterDevice() && wh.rdev === 0, '0/0 whiteout made without privileges');
  const x = spawnSync('getfattr', ['-d', '-m', '-', '--absolute-names', path.join(upper, 'dir')], { encoding: 'utf8' }).stdout;
  t.match(x, /user\.overlay\.opaque="y"/, 'opaque under user.overlay.');
  t.notMatch(x, /trusted\./, 'no trusted xattrs');

  const u = asUser(['fusermount3', '-u', mnt]);
  t.equal(u.status, 0, `fusermount3 -u as the user: ${u.stderr}`);
  t.notOk(isMounted(mnt), 'unmounted');
});
