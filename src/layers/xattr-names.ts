/**
 * Names of extended attributes in a layer, both directions, as kernel overlayfs (6.7+)
 * stores them; one implementation for the mount (src/overlay/xattr.ts) and for every
 * offline reader (LayerStack.xattrs: Diff, exports) and the tar import.
 *
 * With xattr prefix `<prefix>` (`trusted.overlay.` as root, else `user.overlay.`):
 * - a user's own `<prefix>X` is *escaped*: stored as `<prefix>overlay.X`, shown as
 *   `<prefix>X` again;
 * - the overlay's own attributes (`<prefix>opaque`, `redirect`, `whiteout`, `origin`
 *   ...) are private: never shown, never set by a user;
 * - the other prefix is private too (stratafs reads both when merging); the kernel
 *   passes it through (README "Where stratafs differs from kernel overlayfs").
 * Every other name passes unchanged.
 */
import { PRIVATE_PREFIXES } from './whiteout';

/** How a user's own `<prefix>X` xattr is stored: `<prefix>overlay.X` (kernel 6.7+ escaping). */
export const XATTR_ESCAPE = 'overlay.';

/** Is `attr` one of the overlay's own (private, never shown) attributes, in either namespace? */
export function isPrivateXattr(attr: string): boolean {
  return PRIVATE_PREFIXES.some((p) => attr.startsWith(p) && !attr.startsWith(`${p}${XATTR_ESCAPE}`));
}

/**
 * The name a mount with xattr prefix `prefix` shows for the xattr `name` found on disk:
 * escaped names under their user name, null for the private ones (never shown).
 */
export function visibleXattrName(prefix: string, name: string): string | null {
  const escaped = prefix + XATTR_ESCAPE;
  if (name.startsWith(escaped)) return prefix + name.slice(escaped.length);
  return isPrivateXattr(name) ? null : name;
}

/**
 * The name stored on disk for the xattr a user calls `name` (the reverse of
 * visibleXattrName): null when the name is private to the overlay (in the other
 * namespace: a user cannot set or read it).
 */
export function storedXattrName(prefix: string, name: string): string | null {
  if (name.startsWith(prefix)) return prefix + XATTR_ESCAPE + name.slice(prefix.length);
  return isPrivateXattr(name) ? null : name;
}

/** Is `attr` in an overlay namespace at all (private or escaped)? Such names never come in from a tar. */
export function isOverlayNamespace(attr: string): boolean {
  return PRIVATE_PREFIXES.some((p) => attr.startsWith(p));
}
