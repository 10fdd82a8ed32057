/**
 * The snapshotter's --root, checked before anything is served: it holds upper layers in
 * stratafs's (kernel overlayfs's) format, so it needs what an upperdir needs: private
 * overlay xattrs (`trusted.overlay.*`, root only) and whiteouts as the layer library
 * writes them (0/0 character devices), read back as whiteouts. Its path goes into mount
 * option lists, so it may not contain ',' ':' or '\'. The probes leave nothing behind;
 * a missing root is created (mode 0700).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { native, C } from '../native';
import { isCharWhiteout, makeWhiteout, statAt, xattrPath } from '../layers';
import { StratafsError, errnoName, toErrno } from '../errors';

const layerError = (dir: string, msg: string): StratafsError => new StratafsError('STRATAFS_ERR_LAYER', `${dir}: ${msg}`);

export function checkRoot(root: string): string {
  if (!path.isAbsolute(root)) throw layerError(root, 'the snapshotter root must be an absolute path');
  if (/[,:\\]/.test(root)) throw layerError(root, "the snapshotter root may not contain ',' ':' or '\\' (its paths go into mount option lists)");
  fs.mkdirSync(root, { recursive: true, mode: 0o700 });
  const real = fs.realpathSync(root);
  if (!fs.statSync(real).isDirectory()) throw layerError(root, 'not a directory');
  const probe = fs.mkdtempSync(path.join(real, '.probe-'));
  const fd = native.openat(C.AT_FDCWD, probe, fs.constants.O_RDONLY | C.O_DIRECTORY | C.O_NOFOLLOW | C.O_CLOEXEC, 0);
  try {
    try {
      const { path: p, follow } = xattrPath(fd, '');
      native.setxattr(p, 'trusted.overlay.stratafs-probe', Buffer.from('y'), 0, follow);
    } catch (e) {
      throw new StratafsError('STRATAFS_ERR_XATTR',
        `${root}: cannot set trusted.overlay.* xattrs (${errnoName(toErrno(e))}); the snapshotter root must be on a filesystem that supports them, and the snapshotter must run as root`);
    }
    try {
      makeWhiteout(fd, 'wh');
    } catch (e) {
      throw layerError(root, `cannot create whiteouts (0/0 character devices: ${errnoName(toErrno(e))})`);
    }
    if (!isCharWhiteout(statAt(fd, 'wh'))) throw layerError(root, 'a whiteout made here does not read back as one');
  } finally {
    native.close(fd);
    fs.rmSync(probe, { recursive: true, force: true });
  }
  return real;
}
