/**
 * `stratafs` command entry point. Every failure a person can act on is one line on
 * stderr and a non-zero exit; nothing is changed on disk by a refused command.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { StratafsError } from '../errors';
import { parseArgs } from '../mount/options';
import { daemonChannel, deliver, foregroundChannel } from './detach';
import { EXIT_STATUS } from '../mount/verdict';

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
  uidmapping=D:S:N[:...], gidmapping=D:S:N[:...]
                      show ids D.. of the layers as S.. (fuse-overlayfs' meaning)
  squash_to_uid=N, squash_to_gid=N, squash_to_root
                      show every file as owned by N (or root)
  timeout=S           seconds the kernel may cache names and attributes (default 86400)
  passthrough=auto|off  kernel passthrough of file data when root (default auto)
  metacopy=on|off     chmod/chown/utimens/xattrs copy up metadata only (default off)
  redirect_dir=on|off|follow  off/follow: renaming a directory from a lower is EXDEV (default on)
  writeback=on|off    kernel writeback cache without passthrough (default off: a full
                      upper then fails in write(); on loses such writes after close)
  uring=auto|off      FUSE over io_uring when the kernel offers it (the fuse module's
                      enable_uring), else /dev/fuse; off: /dev/fuse only (default auto)
  affinity=auto|off   the daemon's JS thread runs on the CPU its clients send from while
                      they keep to one (default auto); off: this mount never moves it
  noacl               do not enforce POSIX ACLs in the kernel (mode bits only)
  server=PATH         let the \`stratafs daemon --socket PATH\` process serve this mount
  nosuid|suid, nodev|dev, noexec|exec, noatime|relatime|strictatime|atime, nodiratime
                      the mount's flags, as mount(8) sets them (default suid,nodev,exec,noatime;
                      without root always nosuid,nodev)
  ro, rw              read-only, read-write
  remount             change ro/rw and the flags of a mounted stratafs (as mount -o remount
                      does through mount.fuse); layers and ids cannot change (refused)
  accepted with no effect: context=, xattr_permissions=0, ...
flags:
  -f                  stay in the foreground (default: detach once mounted)
  -d                  debug output to stderr (implies -f)
unmount with: fusermount3 -u MOUNTPOINT  (or umount MOUNTPOINT)`;

export function version(): string {
  const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', '..', 'package.json'), 'utf8')) as { version: string };
  return pkg.version;
}

function oneLine(e: unknown): string {
  if (e instanceof StratafsError) return e.message;
  if (e instanceof Error) return e.message.split('\n')[0];
  return String(e);
}

/**
 * Runs the command line ARGV. `startup` says how bin/stratafs.js loaded this code (the
 * bundle or the modules of dist/, and why): `--version` prints it.
 */
export async function main(argv: string[], startup = 'modules of dist/'): Promise<void> {
  if (argv[0] === 'graphdriver' || argv[0] === 'daemon' || argv[0] === 'snapshotter') {
    try {
      if (argv[0] === 'daemon') await (await import('./server.js')).runDaemon(argv.slice(1));
      else if (argv[0] === 'snapshotter') await (await import('./snapshotter.js')).runSnapshotter(argv.slice(1));
      else await (await import('./graphdriver.js')).runGraphdriver(argv.slice(1));
    } catch (e) {
      process.stderr.write(`stratafs ${argv[0]}: ${oneLine(e)}\n`);
      process.exitCode = e instanceof StratafsError && e.code === 'STRATAFS_ERR_USAGE' ? 2 : 1;
    }
    return;
  }
  // set by bin/stratafs for a mount request: everything is reported to the waiting caller
  const channel = daemonChannel();
  const cwd = process.cwd();
  const report = channel ?? foregroundChannel;
  let command;
  try {
    command = parseArgs(argv);
  } catch (e) {
    report.usage(oneLine(e));
    process.exitCode = 2;
    return;
  }
  if (command.kind === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  if (command.kind === 'version') {
    process.stdout.write(`stratafs version ${version()}\nFUSE transport: own (protocol 7.45 max)\ncode: ${startup}\n`);
    return;
  }
  if (command.kind === 'remount') {
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const { remount } = require('../mount/remount.js') as typeof import('../mount/remount.js');
      remount(command.mountpoint, command.given, command.other);
      report.ready();
    } catch (e) {
      if (e instanceof StratafsError && e.code === 'STRATAFS_ERR_OPTION') {
        report.usage(oneLine(e));
        process.exitCode = 2;
      } else {
        report.error(oneLine(e));
        process.exitCode = 1;
      }
    }
    return;
  }
  const opts = command.options;
  // bin/stratafs without its C client: STRATAFS_SERVER asks a daemon, as server= does
  if (channel && opts.server === undefined && process.env.STRATAFS_SERVER) opts.server = path.resolve(process.env.STRATAFS_SERVER);
  if (channel) process.chdir('/'); // hold no directory busy (paths are absolute by now)
  if (opts.server !== undefined) {
    // a running `stratafs daemon` serves it (nothing to detach), asked as the C client asks
    const { mountVerdict } = await import('../server/socket.js');
    const verdict = await mountVerdict(opts.server, argv, cwd);
    deliver(report, verdict);
    process.exitCode = EXIT_STATUS[verdict.kind];
    return;
  }
  if (!channel && !opts.foreground) {
    report.usage('bin/stratafs.js serves a mount only in the foreground (-f); mount with bin/stratafs');
    process.exitCode = 2;
    return;
  }
  if (opts.debug) (await import('debug')).default.enable('stratafs:*');
  try {
    // the daemon module loads the native addon: load it only when mounting, with require:
    // a dynamic import() would start Node's ESM loader first (about 20 ms)
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { leaveSession, serve } = require('./daemon.js') as typeof import('./daemon.js');
    if (channel) leaveSession();
    await serve(opts, report);
  } catch (e) {
    report.error(oneLine(e));
    process.exitCode = 1;
    return;
  }
  process.exitCode = 0;
}
