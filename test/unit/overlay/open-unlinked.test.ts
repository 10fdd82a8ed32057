// A file that is unlinked (or replaced by a rename) while open stays usable through its
// node, as on kernel overlayfs: fstat(2) arrives as GETATTR without a file handle (apt
// creates a temp file, unlinks it, then fstats the fd), fchmod/fchown/futimens as SETATTR
// without one. Once the last handle is released the node reports ENOENT again.
import t from 'tap';
import { constants as fsc } from 'node:fs';
import { E } from '../../../src/errors';
import { ctx, fixture, put, walk, withErrno } from './fixtures/helpers';

t.test('getattr and setattr of an open, unlinked file use its open handle', async (t) => {
  const f = await fixture(1, ([l0]) => put(l0 as string, 'tmp/lower', 'lower data'));
  t.teardown(() => f.cleanup());
  const tmp = walk(f.ov, 'tmp');

  const { entry, open } = await f.ov.create(ctx, tmp, 'scratch', fsc.S_IFREG | 0o600, fsc.O_RDWR);
  t.equal(await f.ov.write(open.fh, 0, Buffer.from('twelve bytes')), 12);
  await f.ov.unlink(ctx, tmp, 'scratch');
  const a = f.ov.getattr(ctx, entry.nodeId);
  t.equal(a.size, 12, 'size of the unlinked file');
  t.equal(a.nlink, 0, 'no name left');
  t.equal(a.ino, entry.attr.ino, 'same inode number');
  const b = await f.ov.setattr(ctx, entry.nodeId, { mode: 0o640, mtime: { sec: 1_000_000, nsec: 5 } });
  t.equal(b.mode & 0o7777, 0o640, 'fchmod of the unlinked file');
  t.equal(b.mtimeSec, 1_000_000, 'futimens of the unlinked file');

  // a lower file copied up by an open for write, then replaced by a rename over it
  const lower = f.ov.lookup(ctx, tmp, 'lower');
  if (lower === null) throw new Error('lower file not found');
  const w = await f.ov.open(ctx, lower.nodeId, fsc.O_WRONLY);
  const other = await f.ov.create(ctx, tmp, 'other', fsc.S_IFREG | 0o644, fsc.O_WRONLY);
  await f.ov.rename(ctx, tmp, 'other', tmp, 'lower', { noReplace: false, exchange: false, whiteout: false });
  t.equal(f.ov.getattr(ctx, lower.nodeId).size, 10, 'the replaced file keeps its attributes while open');

  // reopened through /proc/PID/fd/N
  const again = await f.ov.open(ctx, entry.nodeId, fsc.O_RDONLY);
  t.equal((await f.ov.read(again.fh, 0, 64)).toString(), 'twelve bytes', 'an unlinked file can be opened again while open');
  f.ov.release(again.fh);

  f.ov.release(open.fh);
  f.ov.release(w.fh);
  f.ov.release(other.open.fh);
  t.throws(() => f.ov.getattr(ctx, entry.nodeId), withErrno(E.ENOENT), 'ENOENT once no handle is open');
});
