/**
 * INIT negotiation: what we ask of the kernel, given what it offers and how we run.
 *
 * We take the intersection of the kernel's offer and the features the bridge uses.
 * Deliberately absent: EXPORT_SUPPORT (node ids are not stable across mounts).
 * DONT_MASK goes with POSIX_ACL: under a parent with a default ACL the umask must not be
 * applied, which only the filesystem can tell, so the kernel passes the mode unmasked
 * with the caller's umask beside it (Ctx.umask).
 * POSIX_ACL (unless turned off): the kernel then enforces ACLs in its permission checks,
 * as it does on kernel overlayfs (with default_permissions alone it would look at the
 * mode bits only), caches them instead of asking for them on every `ls -l`, and keeps
 * the access ACL in step with chmod by setting the xattr. The ACL xattrs themselves
 * live in the layers like any other xattr, and default ACLs are inherited by the upper
 * filesystem when the overlay creates a file in a directory that carries one.
 * PASSTHROUGH needs CAP_SYS_ADMIN (root) and excludes WRITEBACK_CACHE, so writeback
 * caching is only asked for when passthrough is not in use, and only when asked for
 * (`writeback=on`): with it write() returns before the data reaches the upper, so a full
 * upper loses acknowledged writes (README "Decisions").
 * OVER_IO_URING (unless `uring` is 'off'): requests then come through an io_uring the
 * session sets up once INIT is answered (uring.ts); the kernel offers it only when the
 * fuse module's enable_uring is on.
 * NO_OPENDIR_SUPPORT (offered by the kernel, nothing to reply): when the filesystem
 * lists directories without a handle (FileSystemApi.listsWithoutOpen), the bridge
 * answers OPENDIR with ENOSYS and the kernel opens directories itself from then on
 * (fs/fuse/file.c: no OPENDIR, no RELEASEDIR; KEEP_CACHE and CACHE_DIR assumed;
 * READDIR with fh 0).
 */
import type { InitOut } from '../wire/encode';
import {
  InitFlag, KERNEL_MINOR_VERSION, KERNEL_VERSION, MAX_PAGES, MAX_WRITE, MIN_MINOR_VERSION,
} from '../wire/protocol';

export interface InitPolicy {
  isRoot: boolean;
  passthrough: 'auto' | 'off';
  /** the writeback cache, when passthrough is not in use ('on') */
  writeback: 'on' | 'off';
  /** negotiate POSIX_ACL (default true) */
  acl?: boolean;
  /** FUSE over io_uring when the kernel offers it ('auto', the default) or never ('off') */
  uring?: 'auto' | 'off';
  /** the filesystem lists directories without a handle (FileSystemApi.listsWithoutOpen) */
  listsWithoutOpen?: boolean;
}

export interface KernelInit {
  major: number;
  minor: number;
  maxReadahead: number;
  flags: bigint;
}

export interface Negotiated {
  minor: number;
  /** the flags we replied with (64-bit set) */
  flags: bigint;
  passthrough: boolean;
  writebackCache: boolean;
  setxattrExt: boolean;
  killprivV2: boolean;
  /** creations carry the caller's umask (Ctx.umask) */
  dontMask: boolean;
  /** FUSE_OVER_IO_URING was agreed: the session registers its ring after the reply */
  uring: boolean;
  /** OPENDIR is answered ENOSYS: the kernel offered NO_OPENDIR_SUPPORT and the filesystem lists without handles */
  noOpendir: boolean;
}

export type InitDecision =
  | { kind: 'ok'; out: InitOut; negotiated: Negotiated }
  /** kernel major is newer: reply with our major only and wait for another INIT */
  | { kind: 'retry'; out: InitOut }
  | { kind: 'error'; reason: string };

/** features the bridge implements and wants whenever the kernel offers them */
export const WANTED_FLAGS =
  InitFlag.ASYNC_READ |
  InitFlag.BIG_WRITES |
  InitFlag.ATOMIC_O_TRUNC |
  InitFlag.DO_READDIRPLUS |
  InitFlag.READDIRPLUS_AUTO |
  InitFlag.PARALLEL_DIROPS |
  InitFlag.MAX_PAGES |
  InitFlag.CACHE_SYMLINKS |
  InitFlag.HANDLE_KILLPRIV_V2 |
  InitFlag.INIT_EXT |
  InitFlag.SETXATTR_EXT;

const MAX_BACKGROUND = 64;
const CONGESTION_THRESHOLD = 48;

function baseOut(minor: number, maxReadahead: number): InitOut {
  return {
    major: KERNEL_VERSION,
    minor,
    maxReadahead,
    flags: 0n,
    maxBackground: MAX_BACKGROUND,
    congestionThreshold: CONGESTION_THRESHOLD,
    maxWrite: MAX_WRITE,
    timeGran: 1,
    maxPages: MAX_PAGES,
    mapAlignment: 0,
    maxStackDepth: 0,
    requestTimeout: 0,
  };
}

export function negotiate(k: KernelInit, policy: InitPolicy): InitDecision {
  if (k.major > KERNEL_VERSION) return { kind: 'retry', out: baseOut(KERNEL_MINOR_VERSION, 0) };
  if (k.major < KERNEL_VERSION || k.minor < MIN_MINOR_VERSION) {
    return { kind: 'error', reason: `kernel protocol ${k.major}.${k.minor} is too old (need 7.${MIN_MINOR_VERSION})` };
  }
  // flags2 only means something when the kernel sets INIT_EXT
  const offered = (k.flags & InitFlag.INIT_EXT) !== 0n ? k.flags : k.flags & 0xffffffffn;
  let flags = offered & WANTED_FLAGS;
  if (policy.acl !== false && (offered & InitFlag.POSIX_ACL) !== 0n) flags |= offered & (InitFlag.POSIX_ACL | InitFlag.DONT_MASK);

  const passthrough =
    policy.passthrough !== 'off' && policy.isRoot &&
    (offered & InitFlag.PASSTHROUGH) !== 0n && (offered & InitFlag.INIT_EXT) !== 0n;
  if (passthrough) flags |= InitFlag.PASSTHROUGH;
  const writebackCache = !passthrough && policy.writeback === 'on' && (offered & InitFlag.WRITEBACK_CACHE) !== 0n;
  if (writebackCache) flags |= InitFlag.WRITEBACK_CACHE;
  const uring = policy.uring !== 'off' && (offered & InitFlag.OVER_IO_URING) !== 0n;
  if (uring) flags |= InitFlag.OVER_IO_URING;

  const minor = Math.min(k.minor, KERNEL_MINOR_VERSION);
  const out = baseOut(minor, k.maxReadahead);
  out.flags = flags;
  if (passthrough) out.maxStackDepth = 1;
  return {
    kind: 'ok',
    out,
    negotiated: {
      minor,
      flags,
      passthrough,
      writebackCache,
      setxattrExt: (flags & InitFlag.SETXATTR_EXT) !== 0n,
      killprivV2: (flags & InitFlag.HANDLE_KILLPRIV_V2) !== 0n,
      dontMask: (flags & InitFlag.DONT_MASK) !== 0n,
      uring,
      noOpendir: policy.listsWithoutOpen === true && (offered & InitFlag.NO_OPENDIR_SUPPORT) !== 0n,
    },
  };
}
