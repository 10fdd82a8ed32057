/**
 * Command line of `stratafs`: the same argv as fuse-overlayfs, so container tools can
 * use it as their mount program.
 *
 *   stratafs [-f] [-d] -o lowerdir=A:B[,upperdir=U,workdir=W][,OPTION...] MOUNTPOINT
 *
 * `-o` may repeat; option lists are comma separated, empty entries (",,") are skipped,
 * values may be double-quoted (podman sends `context="a:b:c1,c2"`) and a backslash
 * escapes the next character (kernel overlayfs escapes ',' and ':' in layer paths).
 *
 * Every problem becomes one StratafsError naming it; nothing here touches the disk.
 */
import * as path from 'node:path';
import { StratafsError } from '../errors';
import type { IdMapRange } from '../overlay/config';

export interface MountOptions {
  lowerdirs: string[];
  upperdir?: string;
  workdir?: string;
  mountpoint: string;
  foreground: boolean;
  debug: boolean;
  readOnly: boolean;
  volatile: boolean;
  uidMap?: IdMapRange[];
  gidMap?: IdMapRange[];
  squashToUid?: number;
  squashToGid?: number;
  /** seconds the kernel may cache entries and attributes */
  timeout: number;
  /** 'auto' uses FUSE passthrough when running as root and the kernel offers it */
  passthrough: 'auto' | 'off';
  /** the kernel enforces POSIX ACLs (off with `noacl`) */
  acl: boolean;
  /** chmod/chown/utimens/xattr changes copy up metadata only (kernel metacopy format) */
  metacopy: boolean;
  /**
   * the kernel's writeback cache on the daemon data path (off by default: a write the
   * upper filesystem cannot take must fail in write(), see README "Decisions")
   */
  writeback: 'on' | 'off';
  /** options recognised and deliberately without effect here (reported with -d) */
  ignored: string[];
  /** mount through the `stratafs daemon` listening on this socket */
  server?: string;
}

export type Command =
  | { kind: 'help' }
  | { kind: 'version' }
  | { kind: 'mount'; options: MountOptions };

const usageError = (msg: string): StratafsError => new StratafsError('STRATAFS_ERR_USAGE', msg);
const optionError = (msg: string): StratafsError => new StratafsError('STRATAFS_ERR_OPTION', msg);

/** Splits an option list on unquoted, unescaped commas; quotes are removed, escapes kept. */
export function splitOptionList(list: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < list.length; i++) {
    const ch = list[i];
    if (ch === '\\' && i + 1 < list.length) {
      cur += ch + list[++i];
    } else if (ch === '"') {
      quoted = !quoted;
    } else if (ch === ',' && !quoted) {
      out.push(cur);
      cur = '';
    } else {
      cur += ch;
    }
  }
  if (quoted) throw optionError(`unbalanced quote in option list "${list}"`);
  out.push(cur);
  return out.filter((s) => s.length > 0);
}

/** Splits a colon-separated layer list, honouring backslash escapes. */
export function splitLayerList(value: string): string[] {
  const out: string[] = [];
  let cur = '';
  for (let i = 0; i < value.length; i++) {
    const ch = value[i];
    if (ch === '\\' && i + 1 < value.length) cur += value[++i];
    else if (ch === ':') {
      out.push(cur);
      cur = '';
    } else cur += ch;
  }
  out.push(cur);
  return out;
}

function unescape(value: string): string {
  return value.replace(/\\(.)/g, '$1');
}

function parseUint(name: string, value: string): number {
  if (!/^\d+$/.test(value)) throw optionError(`option ${name} needs a non-negative integer, got "${value}"`);
  const n = Number(value);
  if (n > 0xffffffff) throw optionError(`option ${name} is out of range: ${value}`);
  return n;
}

/** `uidmapping=INSIDE:HOST:COUNT[:INSIDE:HOST:COUNT...]` (fuse-overlayfs syntax). */
export function parseIdMapping(name: string, value: string): IdMapRange[] {
  const parts = value.split(':');
  if (parts.length === 0 || parts.length % 3 !== 0) {
    throw optionError(`option ${name} needs INSIDE:HOST:COUNT triples, got "${value}"`);
  }
  const ranges: IdMapRange[] = [];
  for (let i = 0; i < parts.length; i += 3) {
    const inside = parseUint(name, parts[i]);
    const host = parseUint(name, parts[i + 1]);
    const count = parseUint(name, parts[i + 2]);
    if (count === 0) throw optionError(`option ${name} has a range of length 0`);
    ranges.push({ inside, host, count });
  }
  return ranges;
}

/** Options accepted for compatibility with mount(8)/fuse-overlayfs that change nothing here. */
const NO_EFFECT = new Set([
  'rw', 'dev', 'nodev', 'suid', 'nosuid', 'exec', 'noexec', 'atime', 'noatime', 'relatime',
  'allow_other', 'allow_root', 'default_permissions', 'async', 'threaded', 'fast_ino',
  'static_nlink', 'userxattr', 'redirect_dir', 'index', 'metacopy', 'xino', 'context',
  'fscontext', 'defcontext', 'rootcontext', 'fsync', 'auto_unmount', 'noauto', 'auto', 'user',
  'nouser', 'nofail', '_netdev', 'x-systemd.automount',
]);

/** What the option list has set so far (the raw lowerdir and timeout until the end). */
type Accum = Pick<MountOptions,
  'upperdir' | 'workdir' | 'readOnly' | 'volatile' | 'uidMap' | 'gidMap' | 'squashToUid' |
  'squashToGid' | 'passthrough' | 'acl' | 'metacopy' | 'writeback' | 'ignored' | 'server'> & {
  lowerdir?: string;
  timeout?: number;
  seen: Set<string>;
};

function applyOption(acc: Accum, opt: string): void {
  const eq = opt.indexOf('=');
  const name = eq < 0 ? opt : opt.slice(0, eq);
  const value = eq < 0 ? undefined : opt.slice(eq + 1);
  const needValue = (): string => {
    if (value === undefined || value === '') throw optionError(`option ${name} needs a value (${name}=...)`);
    return value;
  };
  const once = (): void => {
    if (acc.seen.has(name)) throw optionError(`option ${name} is given twice`);
    acc.seen.add(name);
  };
  switch (name) {
    case 'lowerdir': once(); acc.lowerdir = needValue(); return;
    case 'upperdir': once(); acc.upperdir = unescape(needValue()); return;
    case 'workdir': once(); acc.workdir = unescape(needValue()); return;
    case 'ro': acc.readOnly = true; return;
    case 'volatile': acc.volatile = true; return;
    case 'noacl': acc.acl = false; return;
    case 'acl': acc.acl = true; return;
    case 'uidmapping': once(); acc.uidMap = parseIdMapping(name, needValue()); return;
    case 'gidmapping': once(); acc.gidMap = parseIdMapping(name, needValue()); return;
    case 'squash_to_uid': once(); acc.squashToUid = parseUint(name, needValue()); return;
    case 'squash_to_gid': once(); acc.squashToGid = parseUint(name, needValue()); return;
    case 'server': once(); acc.server = unescape(needValue()); return;
    case 'squash_to_root': acc.squashToUid = 0; acc.squashToGid = 0; return;
    case 'timeout': {
      once();
      const v = needValue();
      const n = Number(v);
      if (!Number.isFinite(n) || n < 0) throw optionError(`option timeout needs a number of seconds, got "${v}"`);
      acc.timeout = n;
      return;
    }
    case 'passthrough': {
      once();
      const v = value ?? 'auto';
      if (v !== 'auto' && v !== 'off') throw optionError(`option passthrough takes auto or off, got "${v}"`);
      acc.passthrough = v;
      return;
    }
    case 'metacopy': {
      once();
      const v = needValue();
      if (v !== 'on' && v !== 'off') throw optionError(`option metacopy takes on or off, got "${v}"`);
      acc.metacopy = v === 'on';
      return;
    }
    case 'writeback': {
      once();
      const v = needValue();
      if (v !== 'on' && v !== 'off') throw optionError(`option writeback takes on or off, got "${v}"`);
      acc.writeback = v;
      return;
    }
    case 'xattr_permissions':
      if (value !== undefined && value !== '0') {
        throw optionError(`option xattr_permissions=${value} is not supported (stratafs stores real owners and modes)`);
      }
      acc.ignored.push(opt);
      return;
    default:
      if (NO_EFFECT.has(name)) {
        acc.ignored.push(opt);
        return;
      }
      throw optionError(`unknown option "${name}"`);
  }
}

/**
 * Seconds the kernel may cache names and attributes. stratafs is the only writer of the
 * upper layer and the lowers are read-only, so what the kernel caches stays true unless
 * a layer is changed behind the mount (unsupported, as with kernel overlayfs); where
 * stratafs itself changes something the kernel did not ask for, it invalidates.
 */
export const DEFAULT_TIMEOUT = 86400;

export const USAGE = `usage: stratafs [-f] [-d] -o lowerdir=A:B[,upperdir=U,workdir=W][,OPTION...] [SOURCE] MOUNTPOINT
       stratafs --version | --help
       stratafs graphdriver --help | stratafs daemon --help   (Docker plugin, one process for many mounts)
       stratafs snapshotter --help                          (containerd proxy snapshotter)
options (comma separated, -o may repeat):
  lowerdir=A:B        read-only layers, top first (required)
  upperdir=U          writable layer; without it the mount is read-only
  workdir=W           scratch dir on the same filesystem as upperdir (required with upperdir)
  ro                  mount read-only even with an upperdir
  volatile            skip fsync/syncfs (faster; data may be lost on a crash)
  uidmapping=I:H:N[:...], gidmapping=I:H:N[:...]
                      show host ids H.. as I.. inside the mount
  squash_to_uid=N, squash_to_gid=N, squash_to_root
                      show every file as owned by N (or root)
  timeout=S           seconds the kernel may cache names and attributes (default 86400)
  passthrough=auto|off  kernel passthrough of file data when root (default auto)
  metacopy=on|off     chmod/chown/utimens/xattrs copy up metadata only (default off)
  writeback=on|off    kernel writeback cache without passthrough (default off: a full
                      upper then fails in write(); on loses such writes after close)
  noacl               do not enforce POSIX ACLs in the kernel (mode bits only)
  server=PATH         let the \`stratafs daemon --socket PATH\` process serve this mount
  accepted with no effect: context=, xattr_permissions=0, rw, nodev, noatime, ...
flags:
  -f                  stay in the foreground (default: detach once mounted)
  -d                  debug output to stderr (implies -f)
unmount with: fusermount3 -u MOUNTPOINT  (or umount MOUNTPOINT)`;

export function parseArgs(argv: string[], cwd: string = process.cwd()): Command {
  const acc: Accum = { readOnly: false, volatile: false, passthrough: 'auto', acl: true, metacopy: false, writeback: 'off', ignored: [], seen: new Set() };
  let foreground = false;
  let debug = false;
  const positional: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--help' || arg === '-h') return { kind: 'help' };
    if (arg === '--version' || arg === '-V') return { kind: 'version' };
    if (arg === '-f') foreground = true;
    else if (arg === '-d' || arg === '--debug') debug = foreground = true;
    else if (arg === '-o') {
      if (i + 1 >= argv.length) throw usageError('-o needs an option list');
      for (const opt of splitOptionList(argv[++i])) applyOption(acc, opt);
    } else if (arg.startsWith('-o')) {
      for (const opt of splitOptionList(arg.slice(2))) applyOption(acc, opt);
    } else if (arg === '--') {
      positional.push(...argv.slice(i + 1));
      break;
    } else if (arg.startsWith('-')) {
      throw usageError(`unknown flag "${arg}" (see stratafs --help)`);
    } else positional.push(arg);
  }
  if (positional.length === 0) throw usageError('no mountpoint given (see stratafs --help)');
  // `SOURCE MOUNTPOINT` is how mount(8) and mount.fuse3 call a filesystem's program (the
  // containerd snapshotter's fuse3.stratafs mounts): the source names nothing here
  if (positional.length > 2) throw usageError(`one mountpoint expected (or SOURCE MOUNTPOINT), got ${positional.length}: ${positional.join(' ')}`);
  if (acc.lowerdir === undefined) throw optionError('lowerdir= is required');
  const lowerdirs = splitLayerList(acc.lowerdir);
  if (lowerdirs.some((l) => l === '')) throw optionError(`lowerdir has an empty entry: "${acc.lowerdir}"`);
  if (acc.upperdir !== undefined && acc.workdir === undefined) throw optionError('upperdir= needs workdir= too');
  if (acc.workdir !== undefined && acc.upperdir === undefined) throw optionError('workdir= given without upperdir=');
  const abs = (p: string): string => path.resolve(cwd, p);
  return {
    kind: 'mount',
    options: {
      lowerdirs: lowerdirs.map(abs),
      upperdir: acc.upperdir === undefined ? undefined : abs(acc.upperdir),
      workdir: acc.workdir === undefined ? undefined : abs(acc.workdir),
      mountpoint: abs(positional[positional.length - 1]),
      foreground,
      debug,
      readOnly: acc.readOnly || acc.upperdir === undefined,
      volatile: acc.volatile,
      uidMap: acc.uidMap,
      gidMap: acc.gidMap,
      squashToUid: acc.squashToUid,
      squashToGid: acc.squashToGid,
      timeout: acc.timeout ?? DEFAULT_TIMEOUT,
      passthrough: acc.passthrough,
      acl: acc.acl,
      metacopy: acc.metacopy,
      writeback: acc.writeback,
      ignored: acc.ignored,
      server: acc.server === undefined ? undefined : abs(acc.server),
    },
  };
}
