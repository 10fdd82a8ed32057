/**
 * The FUSE device wrappers on a device fd that is not mounted: each must fail with a
 * clear errno, and a reader on it must end (reporting that errno) and let go of the
 * event loop. Mounted behaviour is covered by the integration tests.
 */
import t from 'tap';
import * as fs from 'node:fs';
import * as os from 'node:os';
import { native, C, isNativeError } from '../../src/native';

const E = os.constants.errno;

if (!fs.existsSync('/dev/fuse')) {
  t.plan(0, 'no /dev/fuse here');
} else {
  const fd = native.fuseOpen();
  t.teardown(() => native.close(fd));

  t.test('fuseOpen opens the FUSE character device', async (tt) => {
    const st = native.statx(fd, '', C.AT_EMPTY_PATH);
    const ref = native.statx(C.AT_FDCWD, '/dev/fuse', 0);
    tt.equal(st.mode, ref.mode);
    tt.same([st.rdevMajor, st.rdevMinor], [ref.rdevMajor, ref.rdevMinor]);
    tt.equal(st.mode & fs.constants.S_IFMT, fs.constants.S_IFCHR);
  });

  t.test('ioctls and writes on an unmounted device fail with an errno', async (tt) => {
    const cases: [string, () => unknown][] = [
      ['fuseClone', () => native.fuseClone(fd)],
      ['fuseBackingOpen', () => native.fuseBackingOpen(fd, 0)],
      ['fuseBackingClose', () => native.fuseBackingClose(fd, 1)],
      ['fuseWritev', () => native.fuseWritev(fd, [Buffer.alloc(16)])],
    ];
    for (const [name, fn] of cases) {
      try {
        fn();
        tt.fail(`${name} succeeded`);
      } catch (e) {
        tt.ok(isNativeError(e), `${name}: a native error`);
        if (isNativeError(e)) {
          tt.ok(['EPERM', 'EINVAL', 'ENOTTY'].includes(e.code), `${name}: ${e.code}`);
          tt.equal(e.errno, E[e.code as keyof typeof E]);
          tt.ok(e.syscall === 'ioctl' || e.syscall === 'writev', `${name}: syscall ${e.syscall}`);
        }
      }
    }
    tt.throws(() => native.fuseWritev(fd, 'x' as never), { name: 'TypeError' });
  });

  t.test('fusermount reports a failed handshake as EIO', async (tt) => {
    // fusermount3 prints its reason on stderr and exits non-zero without sending an fd
    tt.throws(() => native.fusermount('/nonexistent/stratafs-mountpoint', 'fsname=stratafs'), {
      code: 'EIO', errno: E.EIO, syscall: 'fusermount',
    });
  });

  t.test('a poller on an unmounted fd ends once with the errno and releases the loop', async (tt) => {
    const other = native.fuseOpen();
    tt.teardown(() => native.close(other));
    const batches: number[] = [];
    const ends: [number, number][] = [];
    const area = Buffer.alloc(1024 * 1024 + 4096);
    const index = new Int32Array(3 * 8);
    await new Promise<void>((resolve) => {
      native.fuseStartPoller([other], area.length, area, index, (n) => batches.push(n), (f, errno) => {
        ends.push([f, errno]);
        setImmediate(resolve);
      });
    });
    tt.same(batches, [], 'no requests');
    tt.same(ends, [[other, E.EPERM]], 'one end, with the read errno');
    tt.throws(() => native.fuseStartPoller([other], 100, area, index, () => undefined, () => undefined), { code: 'EINVAL' });
    tt.throws(() => native.fuseStartPoller([], 65536, area, index, () => undefined, () => undefined), { name: 'TypeError' });
    const h = native.fuseStartPoller([other], 65536, area, index, () => undefined, () => tt.fail('no callback after stop'));
    native.fuseStopPoller(h);
    native.fuseStopPoller(h);
    await new Promise((r) => setTimeout(r, 50));
  });

}
