/**
 * `stratafs snapshotter`: containerd's proxy snapshotter as a long-running process.
 */
import createDebug from 'debug';
import * as path from 'node:path';
import { StratafsError } from '../errors';
import { usage, walkArgs } from './args';

export const SNAPSHOTTER_USAGE = `usage: stratafs snapshotter --address SOCKET --root DIR [-d]
Serves containerd's snapshotter service (containerd.services.snapshots.v1.Snapshots) over
gRPC on SOCKET, for a proxy_plugins entry in containerd's config.toml:
  [proxy_plugins.stratafs]
    type = "snapshot"
    address = "SOCKET"
Snapshots live under DIR (a SQLite database and one directory each); containers get
fuse3.stratafs mounts that containerd makes through mount.fuse3, so stratafs must be in
containerd's PATH.
  --address SOCKET  unix socket to listen on (only its owner, root, can connect)
  --root DIR        snapshot store (needs trusted.* xattrs and device nodes)
  -d, --debug       log every call to stderr (DEBUG=stratafs:snapshotter also works)
  -h, --help        this text
Stop it with SIGTERM or SIGINT; the mounts containerd made stay as they are.`;

export interface SnapshotterArgs {
  address: string;
  root: string;
  debug: boolean;
}


export function parseSnapshotterArgs(argv: string[]): SnapshotterArgs | 'help' {
  let address: string | undefined;
  let root: string | undefined;
  const walked = walkArgs(argv, 'snapshotter', (a, value) => {
    if (a === '--address') address = path.resolve(value());
    else if (a === '--root') root = path.resolve(value());
    else return false;
    return true;
  });
  if (walked === 'help') return 'help';
  const { debug } = walked;
  if (address === undefined) throw usage('--address SOCKET is required (see stratafs snapshotter --help)');
  if (root === undefined) throw usage('--root DIR is required (see stratafs snapshotter --help)');
  return { address, root, debug };
}

/** Runs the snapshotter until a signal ends it. Errors are thrown for main() to print. */
export async function runSnapshotter(argv: string[]): Promise<void> {
  const args = parseSnapshotterArgs(argv);
  if (args === 'help') {
    process.stdout.write(`${SNAPSHOTTER_USAGE}\n`);
    return;
  }
  if (process.getuid?.() !== 0) throw new StratafsError('STRATAFS_ERR_SERVER', 'stratafs snapshotter must run as root (its layers keep trusted.overlay.* xattrs)');
  if (args.debug) createDebug.enable('stratafs:snapshotter');
  const { startSnapshotter } = await import('../snapshotter/server.js');
  const running = await startSnapshotter({ address: args.address, root: args.root });
  process.stderr.write(`stratafs snapshotter: listening on ${args.address}\n`);
  await new Promise<void>((resolve) => {
    const onSignal = (sig: NodeJS.Signals): void => {
      process.stderr.write(`stratafs snapshotter: ${sig}, stopping\n`);
      running.stop().then(resolve, (e: Error) => {
        process.stderr.write(`stratafs snapshotter: ${e.message}\n`);
        process.exitCode = 1;
        resolve();
      });
    };
    for (const s of ['SIGTERM', 'SIGINT'] as const) process.once(s, onSignal);
  });
}
