/**
 * What this process may do, decided by capability, not by uid.
 *
 * Rootless podman runs its mount program as uid 0 *inside a user namespace*: `getuid()`
 * says 0, yet the kernel refuses everything that needs CAP_SYS_ADMIN over the initial
 * user namespace: `trusted.*` xattrs, FUSE passthrough (BACKING_OPEN). mount(2) of a
 * FUSE filesystem needs CAP_SYS_ADMIN only in the user namespace owning the mount
 * namespace (FUSE is mountable in user namespaces), which podman's namespace gives.
 *
 *   initialUserNs  /proc/self/uid_map is the identity map of the initial namespace
 *                  ("0 0 4294967295"): ids and capabilities here are the host's
 *   capSysAdmin    CAP_SYS_ADMIN is in the effective set (of *this* namespace)
 *   hostAdmin      both: trusted.* xattrs and passthrough are possible
 *
 * The xattr namespace is finally decided by a probe on the work dir (overlay/mount.ts):
 * where `trusted.*` cannot be set, `user.overlay.*` is used, as kernel overlayfs does
 * with `userxattr`.
 */
import { readFileSync } from 'node:fs';

/** capability number of CAP_SYS_ADMIN (include/uapi/linux/capability.h) */
const CAP_SYS_ADMIN = 21n;
/** the initial user namespace maps every id to itself: 0 0 4294967295 */
const IDENTITY_MAP = /^\s*0\s+0\s+4294967295\s*$/;

export interface Privilege {
  readonly initialUserNs: boolean;
  readonly capSysAdmin: boolean;
  readonly hostAdmin: boolean;
}

/** Parses /proc/PID/uid_map text: true for the initial namespace's identity map. */
export function isIdentityMap(uidMap: string): boolean {
  const lines = uidMap.split('\n').filter((l) => l.trim() !== '');
  return lines.length === 1 && IDENTITY_MAP.test(lines[0]);
}

/** Parses /proc/PID/status text: whether CapEff holds CAP_SYS_ADMIN. */
export function hasCapSysAdmin(status: string): boolean {
  const m = /^CapEff:\s*([0-9a-f]+)\s*$/im.exec(status);
  if (!m) return false;
  return ((BigInt(`0x${m[1]}`) >> CAP_SYS_ADMIN) & 1n) === 1n;
}

function read(file: string): string {
  try {
    return readFileSync(file, 'latin1');
  } catch {
    return '';
  }
}

let cached: Privilege | undefined;

/** The privilege of this process (read once: it does not change while we run). */
export function privilege(): Privilege {
  if (cached) return cached;
  // without /proc/self/uid_map (kernel without user namespaces) we are in the initial one
  const map = read('/proc/self/uid_map');
  const initialUserNs = map === '' || isIdentityMap(map);
  const capSysAdmin = hasCapSysAdmin(read('/proc/self/status'));
  cached = { initialUserNs, capSysAdmin, hostAdmin: initialUserNs && capSysAdmin };
  return cached;
}

/**
 * Whether process PID holds CAP_SYS_ADMIN over the initial user namespace, as the kernel's
 * capable(CAP_SYS_ADMIN) asks (e.g. before listing trusted.* names). False when it cannot
 * be told (the process is gone, or its pid is not visible here: 0).
 */
export function processIsHostAdmin(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  const status = read(`/proc/${pid}/status`);
  if (!hasCapSysAdmin(status)) return false;
  const map = read(`/proc/${pid}/uid_map`);
  return map !== '' && isIdentityMap(map);
}
