/**
 * `stratafs snapshotter`: the gRPC service on a unix socket that containerd's
 * proxy_plugins entry names. This process serves no mount (containerd mounts through
 * mount.fuse3, see mounts.ts), so stopping it, or killing it, leaves every container's
 * root as it is; a restarted snapshotter opens the same database and directories and
 * answers for every snapshot again.
 *
 * The socket: grpc-js gets its connections from our own net.Server (a connection
 * injector), so the socket is made as every stratafs socket is (server/guarded-socket:
 * private from the start, every peer checked with SO_PEERCRED: root or our own uid).
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { StratafsError } from '../errors';
import { admitPeer, listenGuarded } from '../server/guarded-socket';
import { Snapshotter } from './snapshots';
import { handlers, snapshotsService } from './service';
import { checkRoot } from './root';

export interface SnapshotterOptions {
  /** the unix socket containerd connects to */
  address: string;
  /** where the database and the snapshots live */
  root: string;
}

export interface RunningSnapshotter {
  readonly snapshotter: Snapshotter;
  /** stops accepting, ends open calls, removes the socket, closes the database */
  stop(): Promise<void>;
}

export async function startSnapshotter(opts: SnapshotterOptions): Promise<RunningSnapshotter> {
  const root = checkRoot(opts.root);
  const snapshotter = new Snapshotter(root);
  const grpcServer = new grpc.Server();
  grpcServer.addService(snapshotsService(), handlers(snapshotter));
  const injector = grpcServer.createConnectionInjector(grpc.ServerCredentials.createInsecure());
  const sockets = new Set<net.Socket>();
  const server = net.createServer((sock) => {
    if (!admitPeer(sock, {})) return;
    sockets.add(sock);
    sock.once('close', () => sockets.delete(sock));
    injector.injectConnection(sock);
  });
  let listener: { close(): Promise<void> };
  try {
    fs.mkdirSync(path.dirname(opts.address), { recursive: true, mode: 0o700 });
    listener = await listenGuarded(server, opts.address,
      () => new StratafsError('STRATAFS_ERR_SERVER', `${opts.address} is in use by a running process`));
  } catch (e) {
    snapshotter.close();
    throw e;
  }
  let stopping: Promise<void> | undefined;
  return {
    snapshotter,
    stop: () => (stopping ??= (async () => {
      const closed = listener.close();
      injector.drain(1000);
      await new Promise<void>((resolve) => grpcServer.tryShutdown(() => resolve()));
      injector.destroy();
      for (const s of sockets) s.destroy();
      await closed;
      snapshotter.close();
    })()),
  };
}
