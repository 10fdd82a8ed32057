/**
 * The overlay marks as the graph driver reads them in layer dirs: 0/0 character device
 * whiteouts and the private `<prefix>opaque` / `<prefix>redirect` xattrs.
 */
import { constants as fsc } from 'node:fs';
import { native, isNativeError, type Stat } from '../native';
import { bytes } from './beneath';

export function isWhiteout(st: Stat): boolean {
  return (st.mode & fsc.S_IFMT) === fsc.S_IFCHR && st.rdevMajor === 0 && st.rdevMinor === 0;
}

/** Private overlay xattrs (both namespaces, and the configured one) never leave a layer. */
export function isOverlayXattr(name: string, prefix: string): boolean {
  return name.startsWith('trusted.overlay.') || name.startsWith('user.overlay.') || name.startsWith(prefix);
}

/** The value of `<prefix>NAME` on a path (not following a final symlink), if set. */
export function markValue(file: string, prefix: string, mark: 'opaque' | 'redirect'): string | undefined {
  try {
    return native.getxattr(bytes(file), `${prefix}${mark}`, false).toString('latin1');
  } catch (e) {
    if (isNativeError(e) && (e.code === 'ENODATA' || e.code === 'ENOTSUP' || e.code === 'EOPNOTSUPP')) return undefined;
    throw e;
  }
}

export function hasMark(file: string, prefix: string, mark: 'opaque' | 'redirect'): boolean {
  const v = markValue(file, prefix, mark);
  return mark === 'opaque' ? v === 'y' : v !== undefined;
}
