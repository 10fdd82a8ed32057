/**
 * The addon's copy-up of a regular file (native-bindings/src/copyup.c) in its two
 * forms: copyUpFile on the thread pool and copyUpFileNow on the calling thread make the
 * same copy and report the same result; a failure is a promise rejected / an error thrown.
 */
import t from 'tap';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { native, C, isNativeError, type CopyUpFileOptions, type CopyUpFileResult, type NativeError } from '../../src/native';

const { O_RDONLY, O_WRONLY, O_CREAT, O_EXCL } = fs.constants;

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'stratafs-native-copyup-'));
t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));

const opts = (o: Partial<CopyUpFileOptions> = {}): CopyUpFileOptions => ({
  uid: 1234, gid: 2345, mode: 0o640, data: true, sync: true, reflink: true, xattrs: true,
  privatePrefixes: ['trusted.overlay.'], escape: 'overlay.', ...o,
});

/** a lower file with data, times and a user xattr plus a private one */
function source(name: string): string {
  const p = path.join(root, name);
  fs.writeFileSync(p, `data of ${name}\n`);
  execFileSync('setfattr', ['-n', 'user.color', '-v', 'blue', p]);
  execFileSync('setfattr', ['-n', 'trusted.overlay.origin', '-v', 'x', p]);
  execFileSync('touch', ['-h', '-d', '2001-02-03 04:05:06.123456789', p]);
  return p;
}

/** runs one form on src into a new file `dst`; returns its result */
async function copy(now: boolean, src: string, dst: string, o: CopyUpFileOptions): Promise<CopyUpFileResult> {
  const sfd = native.openat(C.AT_FDCWD, src, O_RDONLY | C.O_CLOEXEC, 0);
  const dfd = native.openat(C.AT_FDCWD, dst, O_WRONLY | O_CREAT | O_EXCL | C.O_CLOEXEC, 0o600);
  try {
    return now ? native.copyUpFileNow(sfd, dfd, o) : await native.copyUpFile(sfd, dfd, o);
  } finally {
    native.close(sfd);
    native.close(dfd);
  }
}

t.test('copyUpFileNow makes the copy copyUpFile makes, and returns the same result', async (t) => {
  const src = source('src');
  for (const now of [false, true]) {
    for (const data of [true, false]) {
      // its times as the copy will read them (reading its data may move its atime)
      const s = fs.statSync(src, { bigint: true });
      const dst = path.join(root, `dst-${now ? 'now' : 'pool'}-${data ? 'data' : 'trunc'}`);
      const r = await copy(now, src, dst, opts({ data }));
      const d = fs.statSync(dst, { bigint: true });
      const what = `${now ? 'copyUpFileNow' : 'copyUpFile'}, data ${data}`;
      t.equal(fs.readFileSync(dst, 'utf8'), data ? 'data of src\n' : '', `${what}: data`);
      t.same([d.uid, d.gid, d.mode & 0o7777n], [1234n, 2345n, 0o640n], `${what}: owner and mode`);
      t.same([d.atimeNs, d.mtimeNs], [s.atimeNs, s.mtimeNs], `${what}: ns times`);
      t.equal(execFileSync('getfattr', ['--only-values', '-n', 'user.color', dst]).toString(), 'blue', `${what}: xattr`);
      t.throws(() => execFileSync('getfattr', ['-n', 'trusted.overlay.origin', dst], { stdio: 'pipe' }), `${what}: no private xattr`);
      t.same(r, { ino: d.ino, xattrs: 1, hasXattrs: true, reflinkUnsupported: r.reflinkUnsupported }, `${what}: result`);
    }
  }
});

t.test('copyUpFileNow throws what copyUpFile rejects with', async (t) => {
  const src = source('bad');
  const sfd = native.openat(C.AT_FDCWD, src, O_RDONLY | C.O_CLOEXEC, 0);
  t.teardown(() => native.close(sfd));
  // a read-only destination: the copy fails (which step fails first is the addon's)
  const dfd = native.openat(C.AT_FDCWD, src, O_RDONLY | C.O_CLOEXEC, 0);
  t.teardown(() => native.close(dfd));
  let rejected: unknown;
  await native.copyUpFile(sfd, dfd, opts()).catch((e: unknown) => {
    rejected = e;
  });
  t.ok(isNativeError(rejected), 'copyUpFile rejects with a native error');
  let thrown: unknown;
  try {
    native.copyUpFileNow(sfd, dfd, opts());
  } catch (e) {
    thrown = e;
  }
  t.ok(isNativeError(thrown), 'copyUpFileNow throws a native error');
  const { code, errno, syscall } = rejected as NativeError;
  t.match(thrown, { code, errno, syscall }, `the same error (${code} from ${syscall})`);
  t.not(errno, 0);
  t.throws(() => native.copyUpFileNow(sfd, dfd, { ...opts(), uid: 'x' } as never), { name: 'TypeError' }, 'options are checked');
});
