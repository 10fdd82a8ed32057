/**
 * `stratafs daemon --socket PATH`: one long-running process that serves every mount
 * asked for over its socket (`stratafs -o server=PATH,... MOUNTPOINT`), instead of a
 * process per mount. `--list` and `--unmount MOUNTPOINT` talk to a running one.
 */
import createDebug from 'debug';
import * as path from 'node:path';
import { StratafsError } from '../errors';
import type { SocketAccess, SocketLimits } from '../server/guarded-socket';
import { usage, walkArgs } from './args';
import { LIMITS_USAGE, socketOption } from './socket-options';

export const DAEMON_USAGE = `usage: stratafs daemon --socket PATH [--allow-uid UID] [LIMITS] [-d]
       stratafs daemon --socket PATH --list | --unmount MOUNTPOINT
Serves many stratafs mounts from one process. Mount through it with
  stratafs -o server=PATH,lowerdir=...,upperdir=...,workdir=... MOUNTPOINT
(the command returns once the mount is ready; it fails with a clear error when no
daemon listens on PATH). Unmount with umount / fusermount3 -u as usual.
  --socket PATH   the unix socket (mode 0600, never reachable by others even briefly)
  --allow-uid UID also accept connections from this uid (root and the server's own
                  uid always may; every other peer is refused, checked with
                  SO_PEERCRED on each connection)
${LIMITS_USAGE}
  --list          print the mountpoints a running daemon serves
  --unmount MNT   ask a running daemon to unmount MNT
  -d, --debug     log to stderr
Stop it with SIGTERM or SIGINT: it unmounts everything it serves.`;

type Action = { kind: 'serve' | 'list'; socket: string; debug: boolean; access: SocketAccess; limits: Partial<SocketLimits> } |
  { kind: 'unmount'; socket: string; target: string };


export function parseDaemonArgs(argv: string[]): Action | 'help' {
  let socket: string | undefined;
  let list = false;
  let target: string | undefined;
  const access: SocketAccess = {};
  const limits: Partial<SocketLimits> = {};
  const walked = walkArgs(argv, 'daemon', (a, value) => {
    if (a === '--socket') socket = path.resolve(value());
    else if (a === '--list') list = true;
    else if (a === '--unmount') target = path.resolve(value());
    else return socketOption(a, value, access, limits);
    return true;
  });
  if (walked === 'help') return 'help';
  const { debug } = walked;
  if (!socket) throw usage('stratafs daemon needs --socket PATH');
  if (target !== undefined) return { kind: 'unmount', socket, target };
  return { kind: list ? 'list' : 'serve', socket, debug, access, limits };
}

export async function runDaemon(argv: string[]): Promise<void> {
  const action = parseDaemonArgs(argv);
  if (action === 'help') {
    process.stdout.write(`${DAEMON_USAGE}\n`);
    return;
  }
  const { listenSocket, request } = await import('../server/socket.js');
  if (action.kind !== 'serve') {
    const r = await request(action.socket, action.kind === 'unmount' ? { op: 'unmount', mountpoint: action.target } : { op: 'list' });
    if (!r.ok) throw new StratafsError('STRATAFS_ERR_SERVER', r.error);
    for (const m of r.mounts ?? []) process.stdout.write(`${m.mountpoint}\n`);
    return;
  }
  if (action.debug) createDebug.enable('stratafs:server*');
  process.chdir('/');
  const server = await listenSocket(action.socket, { ...action.access, limits: action.limits });
  process.stderr.write(`stratafs daemon: listening on ${action.socket}\n`);
  await new Promise<void>((resolve) => {
    const onSignal = (sig: NodeJS.Signals): void => {
      process.stderr.write(`stratafs daemon: ${sig}, unmounting ${server.mounts.size} mount(s)\n`);
      server.stop().then(resolve, (e: Error) => {
        process.stderr.write(`stratafs daemon: ${e.message}\n`);
        process.exitCode = 1;
        resolve();
      });
    };
    for (const s of ['SIGTERM', 'SIGINT'] as const) process.once(s, onSignal);
  });
}
