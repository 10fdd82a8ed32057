/**
 * The mount's own flags (nosuid, nodev, noexec and the atime policy), given with `-o`
 * as mount(8) and kernel overlayfs take them; the last of two opposites wins, as in
 * mount(8). They become mount(2) flags (root) or fusermount3 options (without root);
 * the kernel then enforces them, and the overlay opens files O_NOATIME on a noatime
 * mount so that its own reads leave the upper's atimes alone.
 *
 * Defaults, when nothing is asked (kept from before flags were honoured, and what
 * fuse-overlayfs does as root): suid, nodev, exec, noatime. Without root fusermount3
 * always adds nosuid and nodev; asking for `suid` or `dev` there is refused.
 */
import { StratafsError } from '../errors';
import { C } from '../native';

export type AtimePolicy = 'noatime' | 'relatime' | 'strictatime';

export interface MountFlags {
  /** undefined: not asked (suid where the mount allows it: as root) */
  nosuid?: boolean;
  nodev: boolean;
  noexec: boolean;
  atime: AtimePolicy;
  nodiratime: boolean;
}

export const DEFAULT_MOUNT_FLAGS: Readonly<MountFlags> = Object.freeze({
  nodev: true,
  noexec: false,
  atime: 'noatime',
  nodiratime: false,
});

/** Applies flag option NAME (no value) to FLAGS; false when NAME is not a flag option. */
export function applyFlagOption(flags: MountFlags, name: string): boolean {
  switch (name) {
    case 'suid': flags.nosuid = false; return true;
    case 'nosuid': flags.nosuid = true; return true;
    case 'dev': flags.nodev = false; return true;
    case 'nodev': flags.nodev = true; return true;
    case 'exec': flags.noexec = false; return true;
    case 'noexec': flags.noexec = true; return true;
    case 'noatime': flags.atime = 'noatime'; return true;
    // mount(8): "atime" leaves the kernel's default, which is relatime
    case 'atime':
    case 'relatime': flags.atime = 'relatime'; return true;
    case 'strictatime': flags.atime = 'strictatime'; return true;
    case 'nodiratime': flags.nodiratime = true; return true;
    case 'diratime': flags.nodiratime = false; return true;
    default: return false;
  }
}

/** Is NAME (without a value) a flag option? */
export function isFlagOption(name: string): boolean {
  return applyFlagOption({ ...DEFAULT_MOUNT_FLAGS }, name);
}

/** The option words that give FLAGS (for reports and `stratafs daemon` listings). */
export function flagWords(flags: MountFlags): string[] {
  return [
      flags.nosuid === true ? 'nosuid' : 'suid',
    flags.nodev ? 'nodev' : 'dev',
    flags.noexec ? 'noexec' : 'exec',
    flags.atime,
    ...(flags.nodiratime ? ['nodiratime'] : []),
  ];
}

/** mount(2) flags for FLAGS. */
export function msFlags(flags: MountFlags, readOnly: boolean): number {
  let f = 0;
  if (readOnly) f |= C.MS_RDONLY;
  if (flags.nosuid === true) f |= C.MS_NOSUID;
  if (flags.nodev) f |= C.MS_NODEV;
  if (flags.noexec) f |= C.MS_NOEXEC;
  if (flags.atime === 'noatime') f |= C.MS_NOATIME;
  else if (flags.atime === 'relatime') f |= C.MS_RELATIME;
  else f |= C.MS_STRICTATIME;
  if (flags.nodiratime) f |= C.MS_NODIRATIME;
  return f;
}

/** fusermount3 options for FLAGS; `suid` and `dev` need root, and are refused. */
export function fusermountFlagOptions(flags: MountFlags, readOnly: boolean): string[] {
  if (flags.nosuid === false || !flags.nodev) {
    throw new StratafsError('STRATAFS_ERR_OPTION',
      `option ${!flags.nodev ? 'dev' : 'suid'} needs root: without it fusermount3 always mounts nosuid,nodev`);
  }
  const opts = ['nosuid', 'nodev'];
  if (readOnly) opts.push('ro');
  if (flags.noexec) opts.push('noexec');
  opts.push(flags.atime);
  if (flags.nodiratime) opts.push('nodiratime');
  return opts;
}

/** Checks FLAGS (from another process: the daemon's socket protocol); a copy. */
export function checkMountFlags(v: unknown): MountFlags | undefined {
  if (v === undefined) return undefined;
  const o = v as Record<string, unknown>;
  const bools = ['nodev', 'noexec', 'nodiratime'] as const;
  if (typeof v !== 'object' || v === null || !bools.every((k) => typeof o[k] === 'boolean') ||
      !(o.nosuid === undefined || typeof o.nosuid === 'boolean') ||
      !(o.atime === 'noatime' || o.atime === 'relatime' || o.atime === 'strictatime')) {
    throw new StratafsError('STRATAFS_ERR_OPTION', 'mount flags must be {nosuid, nodev, noexec, nodiratime: boolean, atime: noatime|relatime|strictatime}');
  }
  return { nosuid: o.nosuid as boolean | undefined, nodev: o.nodev as boolean, noexec: o.noexec as boolean, atime: o.atime, nodiratime: o.nodiratime as boolean };
}
