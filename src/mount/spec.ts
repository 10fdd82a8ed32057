/**
 * What one mount is made of, whoever asks for it: the command line (options.ts), the
 * daemon's socket protocol (src/server/protocol.ts) and the graph-driver plugin all
 * build a MountSpec, and every one passes through `checkSpec` (MountServer.mount calls
 * it again, so a spec that skipped it cannot mount). One type, one set of rules.
 */
import * as path from 'node:path';
import { StratafsError } from '../errors';
import type { IdMapRange } from '../overlay/config';
import { checkMountFlags, type MountFlags } from './flags';

export interface MountSpec {
  /** read-only layers, top first (absolute paths) */
  lowerdirs: string[];
  /** the writable layer; absent: a read-only mount */
  upperdir?: string;
  /** scratch directory on the upper's filesystem; exactly when upperdir is given */
  workdir?: string;
  mountpoint: string;
  readOnly: boolean;
  /** skip fsync/syncfs */
  volatile: boolean;
  uidMap?: IdMapRange[];
  gidMap?: IdMapRange[];
  squashToUid?: number;
  squashToGid?: number;
  /** seconds the kernel may cache names and attributes (the FUSE bridge applies it) */
  timeout: number;
  /** 'auto' uses FUSE passthrough when running as root and the kernel offers it */
  passthrough: 'auto' | 'off';
  /** the kernel enforces POSIX ACLs (off with `noacl`) */
  acl: boolean;
  /** chmod/chown/utimens/xattr changes copy up metadata only (kernel metacopy format) */
  metacopy: boolean;
  /**
   * directories from a lower may be renamed (a redirect xattr records where they came
   * from); false (`redirect_dir=off`): such a rename is EXDEV, as kernel overlayfs.
   * Absent: true.
   */
  redirectDir?: boolean;
  /**
   * the kernel's writeback cache on the daemon data path; absent means off (a write the
   * upper cannot take must fail in write(), README "Decisions")
   */
  writeback?: 'on' | 'off';
  /**
   * FUSE over io_uring when the kernel offers it (the fuse module's enable_uring);
   * absent means auto. 'off': /dev/fuse reads only.
   */
  uring?: 'auto' | 'off';
  /**
   * the daemon's JS thread follows its clients' CPU (src/fuse/bridge/affinity.ts);
   * absent means auto. 'off': this mount's requests never move it.
   */
  affinity?: 'auto' | 'off';
  /** nosuid, nodev, noexec, atime policy (flags.ts); absent: DEFAULT_MOUNT_FLAGS */
  flags?: MountFlags;
}

/**
 * Seconds the kernel may cache names and attributes. stratafs is the only writer of the
 * upper layer and the lowers are read-only, so what the kernel caches stays true unless
 * a layer is changed behind the mount (unsupported, as with kernel overlayfs); where
 * stratafs itself changes something the kernel did not ask for, it invalidates.
 */
export const DEFAULT_TIMEOUT = 86400;

const MAX_ID = 0xffffffff;
/** kernel overlayfs' OVL_MAX_STACK: more lower layers are refused */
export const MAX_LOWERS = 500;

const refuse = (msg: string): never => {
  throw new StratafsError('STRATAFS_ERR_OPTION', msg);
};

const isAbs = (p: string): boolean => path.isAbsolute(p) && !p.includes('\0');

const isId = (n: unknown): boolean => Number.isInteger(n) && (n as number) >= 0 && (n as number) <= MAX_ID;

function checkRanges(name: string, ranges: IdMapRange[] | undefined): void {
  for (const r of ranges ?? []) {
    if (!isId(r.inside) || !isId(r.host) || !isId(r.count)) refuse(`option ${name} has an id out of range`);
    if (r.count === 0) refuse(`option ${name} has a range of length 0`);
  }
}

/**
 * The rules every mount request obeys; throws STRATAFS_ERR_OPTION naming the first one
 * broken. Returns the spec with only its own fields (a caller's extra fields, such as
 * the CLI's -f, stay behind) and `readOnly` set when there is no upper layer. Touches
 * no disk: whether the paths exist is the mount's business.
 */
export function checkSpec(s: MountSpec): MountSpec {
  if (s.lowerdirs.length === 0) refuse('lowerdir= is required');
  if (s.lowerdirs.length > MAX_LOWERS) refuse(`too many lowerdirs: ${s.lowerdirs.length} (the limit is ${MAX_LOWERS}, as kernel overlayfs)`);
  for (const l of s.lowerdirs) if (!isAbs(l)) refuse(`lowerdir ${JSON.stringify(l)} is not an absolute path`);
  if (s.upperdir !== undefined && s.workdir === undefined) refuse('upperdir= needs workdir= too');
  if (s.workdir !== undefined && s.upperdir === undefined) refuse('workdir= given without upperdir=');
  for (const [name, p] of [['upperdir', s.upperdir], ['workdir', s.workdir], ['mountpoint', s.mountpoint]] as const) {
    if (p !== undefined && !isAbs(p)) refuse(`${name} ${JSON.stringify(p)} is not an absolute path`);
  }
  if (!Number.isFinite(s.timeout) || s.timeout < 0) refuse(`option timeout needs a number of seconds, got ${s.timeout}`);
  if (s.passthrough !== 'auto' && s.passthrough !== 'off') refuse(`option passthrough takes auto or off, got ${String(s.passthrough)}`);
  if (s.writeback !== undefined && s.writeback !== 'on' && s.writeback !== 'off') refuse(`option writeback takes on or off, got ${String(s.writeback)}`);
  if (s.uring !== undefined && s.uring !== 'auto' && s.uring !== 'off') refuse(`option uring takes auto or off, got ${String(s.uring)}`);
  if (s.affinity !== undefined && s.affinity !== 'auto' && s.affinity !== 'off') refuse(`option affinity takes auto or off, got ${String(s.affinity)}`);
  checkRanges('uidmapping', s.uidMap);
  checkRanges('gidmapping', s.gidMap);
  if (s.squashToUid !== undefined && !isId(s.squashToUid)) refuse(`option squash_to_uid is out of range: ${s.squashToUid}`);
  if (s.squashToGid !== undefined && !isId(s.squashToGid)) refuse(`option squash_to_gid is out of range: ${s.squashToGid}`);
  return {
    lowerdirs: [...s.lowerdirs],
    upperdir: s.upperdir,
    workdir: s.workdir,
    mountpoint: s.mountpoint,
    readOnly: s.readOnly || s.upperdir === undefined,
    volatile: s.volatile === true,
    uidMap: s.uidMap,
    gidMap: s.gidMap,
    squashToUid: s.squashToUid,
    squashToGid: s.squashToGid,
    timeout: s.timeout,
    passthrough: s.passthrough,
    acl: s.acl !== false,
    metacopy: s.metacopy === true,
    redirectDir: s.redirectDir !== false,
    writeback: s.writeback === 'on' ? 'on' : 'off',
    uring: s.uring === 'off' ? 'off' : 'auto',
    affinity: s.affinity === 'off' ? 'off' : 'auto',
    flags: checkMountFlags(s.flags),
  };
}
