/**
 * uid/gid translation between the mount (inside) and the layers (host).
 *
 * uidMap/gidMap ranges say ids [inside, inside+count) are [host, host+count) on disk.
 * Without a map ids pass unchanged. A host id outside every range shows as the
 * overflow id (65534, as the kernel shows unmapped ids); an inside id outside every
 * range cannot be stored (EINVAL, like chown in a user namespace).
 * squashToUid/squashToGid: every file appears owned by that id, and new files are
 * created owned by it on disk.
 */
import { E, fail } from '../errors';
import type { IdMapRange, OverlayConfig } from './config';

export const OVERFLOW_ID = 65534;

type Kind = 'uid' | 'gid';

function mapOf(config: OverlayConfig, kind: Kind): IdMapRange[] | undefined {
  return kind === 'uid' ? config.uidMap : config.gidMap;
}

function squashOf(config: OverlayConfig, kind: Kind): number | undefined {
  return kind === 'uid' ? config.squashToUid : config.squashToGid;
}

/** host id (on disk) -> id shown by the mount */
export function idToInside(config: OverlayConfig, kind: Kind, host: number): number {
  const squash = squashOf(config, kind);
  if (squash !== undefined) return squash;
  const map = mapOf(config, kind);
  if (!map || map.length === 0) return host;
  for (const r of map) {
    if (host >= r.host && host < r.host + r.count) return r.inside + (host - r.host);
  }
  return OVERFLOW_ID;
}

/** id given by a caller of the mount -> host id to store */
export function idToHost(config: OverlayConfig, kind: Kind, inside: number): number {
  const squash = squashOf(config, kind);
  if (squash !== undefined) return squash;
  const map = mapOf(config, kind);
  if (!map || map.length === 0) return inside;
  for (const r of map) {
    if (inside >= r.inside && inside < r.inside + r.count) return r.host + (inside - r.inside);
  }
  return fail(E.EINVAL);
}
