/**
 * uid/gid translation between the mount (inside) and the layers (host).
 *
 * uidMap/gidMap ranges say ids [host, host+count) on disk appear as [inside,
 * inside+count) through the mount. Without a map ids pass unchanged. A host id outside
 * every range shows as the overflow id (65534, as the kernel shows unmapped ids); a
 * chown to an inside id outside every range is refused (EINVAL, like chown in a user
 * namespace); an object made by such a caller is stored as the overflow id.
 * A lower reached through an idmapped mount already shows shifted ids (containers-storage
 * hands such lowers together with the mapping for `podman run --uidmap`): its ids are
 * shown as they are and translated back to disk ids on copy-up (`shifted`).
 * squashToUid/squashToGid: every file appears owned by that id, and new files are
 * created owned by it on disk.
 */
import { E, fail } from '../errors';
import type { IdMapRange, OverlayConfig } from './config';
import { mountOf, type MountEntry } from '../mountinfo';

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

/** caller id `inside` -> host id, after squashing and the map; null when outside every range */
function mappedToHost(config: OverlayConfig, kind: Kind, inside: number): number | null {
  const squash = squashOf(config, kind);
  if (squash !== undefined) return squash;
  const map = mapOf(config, kind);
  if (!map || map.length === 0) return inside;
  for (const r of map) {
    if (inside >= r.inside && inside < r.inside + r.count) return r.host + (inside - r.inside);
  }
  return null;
}

/** id given by a caller of the mount -> host id to store (EINVAL outside the map) */
export function idToHost(config: OverlayConfig, kind: Kind, inside: number): number {
  return mappedToHost(config, kind, inside) ?? fail(E.EINVAL);
}

/**
 * The owner stored for an object created by caller id `inside`. A creator outside the
 * mapping (host root creating in a `--uidmap` container's rootfs, as podman does with
 * /etc/mtab before its lchown) cannot be refused: the object is stored as owned by the
 * overflow id, as fuse-overlayfs does. (chown to such an id stays EINVAL.)
 */
export function creatorToHost(config: OverlayConfig, kind: Kind, inside: number): number {
  return mappedToHost(config, kind, inside) ?? OVERFLOW_ID;
}

/** id shown for `id` read from a layer; `shifted`: the layer is on an idmapped mount */
export function shownId(config: OverlayConfig, kind: Kind, id: number, shifted: boolean): number {
  if (!shifted) return idToInside(config, kind, id);
  return squashOf(config, kind) ?? id;
}

/** id to store in the upper for `id` read from a layer (copy-up) */
export function copiedId(config: OverlayConfig, kind: Kind, id: number, shifted: boolean): number {
  return shifted ? creatorToHost(config, kind, id) : id;
}

/**
 * Whether `dir` lies on an idmapped mount of our mount namespace (false when it cannot be
 * told); `mounts` and `real`: the table and `dir`'s real path, where read already.
 */
export function onIdmappedMount(dir: string, mounts?: readonly MountEntry[], real?: string): boolean {
  return mountOf(dir, mounts, real)?.options.includes('idmapped') ?? false;
}
