/**
 * `stratafs graphdriver`: the Docker graph-driver plugin as a long-running process.
 */
import createDebug from 'debug';
import * as path from 'node:path';
import { StratafsError } from '../errors';
import type { SocketAccess, SocketLimits } from '../server/guarded-socket';
import { usage, walkArgs } from './args';
import { LIMITS_USAGE, socketOption } from './socket-options';

export const GRAPHDRIVER_USAGE = `usage: stratafs graphdriver [--name NAME] [--socket PATH] [--home DIR] [--allow-uid UID] [LIMITS] [-d]
Serves Docker's graphdriver plugin protocol (dockerd 20.10 --experimental
--storage-driver=NAME): layers live under the Home dockerd gives at Init, one
directory per layer; every container's rootfs is a stratafs mount served by this
one process.
  --name NAME     plugin name; the socket is /run/docker/plugins/NAME.sock (default stratafs)
  --socket PATH   listen on PATH instead
  --home DIR      open this layer store at start (default: the Home of dockerd's last
                  Init, remembered next to the socket; dockerd's first Init may change it)
  --allow-uid UID also accept connections from this uid (root and the server's own
                  uid always may; every other peer is refused, checked with
                  SO_PEERCRED on each connection)
${LIMITS_USAGE}
  -d, --debug     log requests and mounts to stderr (DEBUG=stratafs:graphdriver:* also works)
  -h, --help      this text
Stop it with SIGTERM or SIGINT: it unmounts its layers and removes the socket.`;

export interface GraphdriverArgs {
  socket: string;
  home?: string;
  debug: boolean;
  access: SocketAccess;
  limits: Partial<SocketLimits>;
}


export const PLUGIN_DIR = '/run/docker/plugins';

export function parseGraphdriverArgs(argv: string[]): GraphdriverArgs | 'help' {
  let name = 'stratafs';
  let socket: string | undefined;
  let home: string | undefined;
  const access: SocketAccess = {};
  const limits: Partial<SocketLimits> = {};
  const walked = walkArgs(argv, 'graphdriver', (a, value) => {
    if (a === '--name') name = value();
    else if (a === '--socket') socket = path.resolve(value());
    else if (a === '--home') home = path.resolve(value());
    else return socketOption(a, value, access, limits);
    return true;
  });
  if (walked === 'help') return 'help';
  const { debug } = walked;
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(name)) throw usage(`invalid plugin name "${name}"`);
  return { socket: socket ?? path.join(PLUGIN_DIR, `${name}.sock`), home, debug, access, limits };
}

/** Runs the plugin until a signal ends it. Errors are thrown for main() to print. */
export async function runGraphdriver(argv: string[]): Promise<void> {
  const args = parseGraphdriverArgs(argv);
  if (args === 'help') {
    process.stdout.write(`${GRAPHDRIVER_USAGE}\n`);
    return;
  }
  if (process.getuid?.() !== 0) throw new StratafsError('STRATAFS_ERR_PLUGIN', 'stratafs graphdriver must run as root (it mounts and keeps overlay xattrs)');
  if (args.debug) createDebug.enable('stratafs:graphdriver*,stratafs:server');
  const { startPlugin } = await import('../graphdriver/plugin.js');
  const plugin = await startPlugin({ socket: args.socket, home: args.home, access: args.access, limits: args.limits });
  process.stderr.write(`stratafs graphdriver: listening on ${args.socket}\n`);
  await new Promise<void>((resolve) => {
    const onSignal = (sig: NodeJS.Signals): void => {
      process.stderr.write(`stratafs graphdriver: ${sig}, unmounting and stopping\n`);
      plugin.stop().then(resolve, (e: Error) => {
        process.stderr.write(`stratafs graphdriver: ${e.message}\n`);
        process.exitCode = 1;
        resolve();
      });
    };
    for (const s of ['SIGTERM', 'SIGINT'] as const) process.once(s, onSignal);
  });
}
