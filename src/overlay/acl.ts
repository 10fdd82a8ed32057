/**
 * POSIX ACLs at creation time.
 *
 * New objects are built in the work dir and renamed into place, so the upper filesystem
 * never sees them created inside their parent and cannot apply the parent's default ACL
 * itself. As kernel overlayfs does, stratafs applies it: when the merged parent carries
 * `system.posix_acl_default`, the umask is not applied and the new object's access ACL
 * and mode follow from the default ACL and the requested mode (the rules of the kernel's
 * posix_acl_create: owner, mask (or group when there is no mask) and other entries are
 * limited by the mode, the mode by them); a new directory also inherits the default ACL.
 * Without a default ACL only the umask applies.
 *
 * The xattr format is the kernel's (linux/posix_acl_xattr.h): a little-endian u32
 * version, then entries of { u16 tag, u16 perm, u32 id }.
 */
import { C } from '../native';

export const ACL_ACCESS = 'system.posix_acl_access';
export const ACL_DEFAULT = 'system.posix_acl_default';

const HEADER = 4;
const ENTRY = 8;
const RWX = 0o7;

export interface AclEntry {
  tag: number;
  perm: number;
  id: number;
}

/** Parses an ACL xattr value; undefined when it is not one (wrong version or size). */
export function parseAcl(buf: Buffer): AclEntry[] | undefined {
  if (buf.length < HEADER || (buf.length - HEADER) % ENTRY !== 0) return undefined;
  if (buf.readUInt32LE(0) !== C.POSIX_ACL_XATTR_VERSION) return undefined;
  const out: AclEntry[] = [];
  for (let off = HEADER; off < buf.length; off += ENTRY) {
    out.push({ tag: buf.readUInt16LE(off), perm: buf.readUInt16LE(off + 2), id: buf.readUInt32LE(off + 4) });
  }
  return out;
}

export function encodeAcl(entries: AclEntry[]): Buffer {
  const buf = Buffer.alloc(HEADER + entries.length * ENTRY);
  buf.writeUInt32LE(C.POSIX_ACL_XATTR_VERSION, 0);
  entries.forEach((e, i) => {
    const off = HEADER + i * ENTRY;
    buf.writeUInt16LE(e.tag, off);
    buf.writeUInt16LE(e.perm, off + 2);
    buf.writeUInt32LE(e.id, off + 4);
  });
  return buf;
}

export interface CreateAcl {
  /** permission bits (07777) the new object gets */
  mode: number;
  /** access ACL to set; undefined when the mode says it all */
  access?: Buffer;
  /** default ACL to set (new directories below a default ACL) */
  default?: Buffer;
}

/**
 * The mode and ACLs of a new object created with `mode` (permission bits as the caller
 * asked, umask not applied) under a parent whose default ACL is `parentDefault`.
 */
export function aclForCreate(mode: number, umask: number, isDir: boolean, parentDefault: Buffer | undefined): CreateAcl {
  const acl = parentDefault === undefined ? undefined : parseAcl(parentDefault);
  if (!acl || acl.length === 0) return { mode: mode & ~umask };
  const entries = acl.map((e) => ({ ...e }));
  let rwx = mode & 0o777;
  let extended = false;
  let groupObj: AclEntry | undefined;
  let mask: AclEntry | undefined;
  for (const e of entries) {
    if (e.tag === C.ACL_USER_OBJ) {
      e.perm &= (rwx >> 6) & RWX;
      rwx &= (e.perm << 6) | ~0o700;
    } else if (e.tag === C.ACL_OTHER) {
      e.perm &= rwx & RWX;
      rwx &= e.perm | ~0o007;
    } else if (e.tag === C.ACL_GROUP_OBJ) {
      groupObj = e;
    } else if (e.tag === C.ACL_MASK) {
      mask = e;
      extended = true;
    } else {
      extended = true; // named users and groups
    }
  }
  const g = mask ?? groupObj;
  if (g) {
    g.perm &= (rwx >> 3) & RWX;
    rwx &= (g.perm << 3) | ~0o070;
  }
  return {
    mode: (mode & ~0o777) | (rwx & 0o777),
    access: extended ? encodeAcl(entries) : undefined,
    default: isDir ? parentDefault : undefined,
  };
}
