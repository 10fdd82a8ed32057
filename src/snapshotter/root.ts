/**
 * The snapshotter's --root, checked before anything is served: it holds upper layers in
 * stratafs's (kernel overlayfs's) format, so it needs what an upperdir needs: private
 * overlay xattrs (`trusted.overlay.*`, root only) and 0/0 character devices (whiteouts).
 * Its path goes into mount option lists, so it may not contain ',' ':' or '\'.
 * Nothing is left behind by the probes; a refused root is left as it was found (a
 * missing one is created, mode 0700).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { native, C } from '../native';
import { StratafsError, errnoName, toErrno } from '../errors';

const layerError = (dir: string, msg: string): StratafsError => new StratafsError('STRATAFS_ERR_LAYER', `${dir}: ${msg}`);

export function checkRoot(root: string): string {
  if (!path.isAbsolute(root)) throw layerError(root, 'the snapshotter root must be an absolute path');
  if (/[,:\\]/.test(root)) throw layerError(root, "the snapshotter root may not contain ',' ':' or '\\' (its paths go into mount option lists)");
  fs.mkdirSync(root, { recursive: true, mode: 0o700 });
  const real = fs.realpathSync(root);
  if (!fs.statSync(real).isDirectory()) throw layerError(root, 'not a directory');
  const probe = fs.mkdtempSync(path.join(real, '.probe-'));
  try {
    try {
      native.setxattr(probe, 'trusted.overlay.stratafs-probe', Buffer.from('y'), 0, false);
    } catch (e) {
      throw new StratafsError('STRATAFS_ERR_XATTR',
        `${root}: cannot set trusted.overlay.* xattrs (${errnoName(toErrno(e))}); the snapshotter root must be on a filesystem that supports them, and the snapshotter must run as root`);
    }
    const fd = native.openat(C.AT_FDCWD, probe, C.O_PATH | C.O_DIRECTORY | C.O_CLOEXEC, 0);
    try {
      native.mknodat(fd, 'wh', fs.constants.S_IFCHR | 0o000, 0, 0);
    } catch (e) {
      throw layerError(root, `cannot create whiteouts (0/0 character devices: ${errnoName(toErrno(e))}); is it mounted nodev?`);
    } finally {
      native.close(fd);
    }
  } finally {
    fs.rmSync(probe, { recursive: true, force: true });
  }
  return real;
}
