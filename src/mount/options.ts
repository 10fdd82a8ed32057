/**
 * Command line of `stratafs` as a mount program: the same argv as fuse-overlayfs, so
 * container tools can use it as their mount program. The CLI parses it, and so does a
 * running daemon for the `mount-argv` request of the C client (src/server/argv.ts).
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
import { checkSpec, DEFAULT_TIMEOUT, type MountSpec } from './spec';
import { applyFlagOption, DEFAULT_MOUNT_FLAGS, isFlagOption, type MountFlags } from './flags';

export { DEFAULT_TIMEOUT } from './spec';

/** A mount as the command line asks for it: the spec, and how the program should run. */
export interface MountOptions extends MountSpec {
  foreground: boolean;
  debug: boolean;
  /** options recognised and deliberately without effect here (reported with -d) */
  ignored: string[];
  /** mount through the `stratafs daemon` listening on this socket */
  server?: string;
}

export type Command =
  | { kind: 'help' }
  | { kind: 'version' }
  | { kind: 'mount'; options: MountOptions }
  /**
   * `-o remount,...` (mount(8) through mount.fuse runs `stratafs SOURCE MNT -o
   * ro,remount,dev,suid`): `given` are the ro/rw and flag options in order, `other` the
   * options a remount cannot change (layers, ids...): remount.ts refuses those.
   */
  | { kind: 'remount'; mountpoint: string; given: string[]; other: string[] };

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

/**
 * `uidmapping=DISK:SHOWN:COUNT[:DISK:SHOWN:COUNT...]`, as fuse-overlayfs reads it: ids
 * [DISK, DISK+COUNT) stored in the layers appear as [SHOWN, SHOWN+COUNT) through the mount
 * (`0:100000:65536` shows a layer's root-owned files as owned by 100000).
 * containers-storage sends the list with a leading ':' (`:0:100000:65536`).
 */
export function parseIdMapping(name: string, value: string): IdMapRange[] {
  const parts = (value.startsWith(':') ? value.slice(1) : value).split(':');
  if (parts.length === 0 || parts.length % 3 !== 0) {
    throw optionError(`option ${name} needs DISK:SHOWN:COUNT triples, got "${value}"`);
  }
  const ranges: IdMapRange[] = [];
  for (let i = 0; i < parts.length; i += 3) {
    const host = parseUint(name, parts[i]);
    const inside = parseUint(name, parts[i + 1]);
    const count = parseUint(name, parts[i + 2]);
    if (count === 0) throw optionError(`option ${name} has a range of length 0`);
    if (host + count > 0x100000000 || inside + count > 0x100000000) throw optionError(`option ${name} has a range past the largest id: ${value}`);
    ranges.push({ inside, host, count });
  }
  return ranges;
}

/** Options accepted for compatibility with mount(8)/fuse-overlayfs that change nothing here. */
const NO_EFFECT = new Set([
  'allow_other', 'allow_root', 'default_permissions', 'async', 'threaded', 'fast_ino',
  'static_nlink', 'userxattr', 'index', 'metacopy', 'xino', 'context',
  'fscontext', 'defcontext', 'rootcontext', 'fsync', 'auto_unmount', 'noauto', 'auto', 'user',
  'nouser', 'nofail', '_netdev', 'x-systemd.automount',
]);

/** What the option list has set so far (the raw lowerdir and timeout until the end). */
type Accum = Pick<MountOptions,
  'upperdir' | 'workdir' | 'readOnly' | 'volatile' | 'uidMap' | 'gidMap' | 'squashToUid' |
  'squashToGid' | 'passthrough' | 'acl' | 'metacopy' | 'writeback' | 'uring' | 'affinity' | 'redirectDir' | 'ignored' | 'server'> & {
  flags: MountFlags;
  remount: boolean;
  /** every option name given, in order */
  given: string[];
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
  acc.given.push(name);
  const once = (): void => {
    if (acc.seen.has(name)) throw optionError(`option ${name} is given twice`);
    acc.seen.add(name);
  };
  switch (name) {
    case 'lowerdir': once(); acc.lowerdir = needValue(); return;
    case 'upperdir': once(); acc.upperdir = unescape(needValue()); return;
    case 'workdir': once(); acc.workdir = unescape(needValue()); return;
    case 'ro': acc.readOnly = true; return;
    case 'rw': acc.readOnly = false; return;
    case 'remount': acc.remount = true; return;
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
    case 'redirect_dir': {
      // kernel overlayfs' values; stratafs always follows redirects it finds
      once();
      const v = needValue();
      if (v === 'nofollow') throw optionError('option redirect_dir=nofollow is not supported (stratafs always follows redirects)');
      if (v !== 'on' && v !== 'off' && v !== 'follow') throw optionError(`option redirect_dir takes on, off or follow, got "${v}"`);
      acc.redirectDir = v === 'on';
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
    case 'uring': {
      once();
      const v = needValue();
      if (v !== 'auto' && v !== 'off') throw optionError(`option uring takes auto or off, got "${v}"`);
      acc.uring = v;
      return;
    }
    case 'affinity': {
      once();
      const v = needValue();
      if (v !== 'auto' && v !== 'off') throw optionError(`option affinity takes auto or off, got "${v}"`);
      acc.affinity = v;
      return;
    }
    case 'xattr_permissions':
      if (value !== undefined && value !== '0') {
        throw optionError(`option xattr_permissions=${value} is not supported (stratafs stores real owners and modes)`);
      }
      acc.ignored.push(opt);
      return;
    default:
      if (value === undefined && applyFlagOption(acc.flags, name)) return;
      if (NO_EFFECT.has(name)) {
        acc.ignored.push(opt);
        return;
      }
      throw optionError(`unknown option "${name}"`);
  }
}

export function parseArgs(argv: string[], cwd: string = process.cwd()): Command {
  const acc: Accum = { readOnly: false, flags: { ...DEFAULT_MOUNT_FLAGS }, remount: false, given: [], volatile: false, passthrough: 'auto', acl: true, metacopy: false, writeback: 'off', redirectDir: true, ignored: [], seen: new Set() };
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
  if (acc.remount) {
    const changes = (n: string): boolean => n === 'ro' || n === 'rw' || isFlagOption(n);
    return {
      kind: 'remount',
      mountpoint: path.resolve(cwd, positional[positional.length - 1]),
      given: acc.given.filter(changes),
      other: [...new Set(acc.given.filter((n) => !changes(n) && n !== 'remount' && !NO_EFFECT.has(n)))],
    };
  }
  // `SOURCE MOUNTPOINT` is how mount(8) and mount.fuse3 call a filesystem's program (the
  // containerd snapshotter's fuse3.stratafs mounts): the source names nothing here
  if (positional.length > 2) throw usageError(`one mountpoint expected (or SOURCE MOUNTPOINT), got ${positional.length}: ${positional.join(' ')}`);
  const lowerdirs = acc.lowerdir === undefined ? [] : splitLayerList(acc.lowerdir);
  if (lowerdirs.some((l) => l === '')) throw optionError(`lowerdir has an empty entry: "${acc.lowerdir}"`);
  const abs = (p: string): string => path.resolve(cwd, p);
  const spec = checkSpec({
    lowerdirs: lowerdirs.map(abs),
    upperdir: acc.upperdir === undefined ? undefined : abs(acc.upperdir),
    workdir: acc.workdir === undefined ? undefined : abs(acc.workdir),
    mountpoint: abs(positional[positional.length - 1]),
    readOnly: acc.readOnly,
    volatile: acc.volatile,
    uidMap: acc.uidMap,
    gidMap: acc.gidMap,
    squashToUid: acc.squashToUid,
    squashToGid: acc.squashToGid,
    timeout: acc.timeout ?? DEFAULT_TIMEOUT,
    passthrough: acc.passthrough,
    acl: acc.acl,
    metacopy: acc.metacopy,
    redirectDir: acc.redirectDir,
    writeback: acc.writeback,
    uring: acc.uring,
    affinity: acc.affinity,
    flags: acc.flags,
  });
  return {
    kind: 'mount',
    options: {
      ...spec,
      foreground,
      debug,
      ignored: acc.ignored,
      server: acc.server === undefined ? undefined : abs(acc.server),
    },
  };
}
