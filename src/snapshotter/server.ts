/**
 * `stratafs snapshotter`: the gRPC service on a unix socket that containerd's
 * proxy_plugins entry names. This process serves no mount (containerd mounts through
 * mount.fuse3, see mounts.ts), so stopping it, or killing it, leaves every container's
 * root as it is; a restarted snapshotter opens the same database and directories and
 * answers for every snapshot again.
 *
 * The socket: grpc-js gets its connections from our own net.Server (a connection
 * injector), so the socket is created the way every stratafs socket is (private from the
 * start, see listenPrivate).
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { StratafsError } from '../errors';
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

function alive(p: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.connect(p, () => {
      c.destroy();
      resolve(true);
    });
    c.on('error', () => resolve(false));
  });
}

/**
 * Listens on `socketPath` so that nobody but this user can ever connect: the socket is
 * bound inside a fresh private directory (mode 0700) next to it, made 0600 there, and
 * renamed into place. A stale socket is replaced; a live one is an error.
 */
async function listenPrivate(server: net.Server, socketPath: string): Promise<() => Promise<void>> {
  if (fs.existsSync(socketPath) && await alive(socketPath)) {
    throw new StratafsError('STRATAFS_ERR_SERVER', `${socketPath} is in use by a running process`);
  }
  fs.mkdirSync(path.dirname(socketPath), { recursive: true, mode: 0o700 });
  const dir = fs.mkdtempSync(path.join(path.dirname(socketPath), `.${path.basename(socketPath)}.bind-`));
  const bound = path.join(dir, 's');
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(bound, () => {
        server.off('error', reject);
        resolve();
      });
    });
    fs.chmodSync(bound, 0o600);
    fs.renameSync(bound, socketPath);
  } catch (e) {
    if (server.listening) await new Promise<void>((resolve) => server.close(() => resolve()));
    fs.rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  return async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
    fs.rmSync(socketPath, { force: true });
    fs.rmSync(dir, { recursive: true, force: true });
  };
}

export async function startSnapshotter(opts: SnapshotterOptions): Promise<RunningSnapshotter> {
  const root = checkRoot(opts.root);
  const snapshotter = new Snapshotter(root);
  const grpcServer = new grpc.Server();
  grpcServer.addService(snapshotsService(), handlers(snapshotter));
  const injector = grpcServer.createConnectionInjector(grpc.ServerCredentials.createInsecure());
  const sockets = new Set<net.Socket>();
  const server = net.createServer((sock) => {
    sockets.add(sock);
    sock.once('close', () => sockets.delete(sock));
    injector.injectConnection(sock);
  });
  let closeSocket: () => Promise<void>;
  try {
    closeSocket = await listenPrivate(server, opts.address);
  } catch (e) {
    snapshotter.close();
    throw e;
  }
  let stopping: Promise<void> | undefined;
  return {
    snapshotter,
    stop: () => (stopping ??= (async () => {
      const closed = closeSocket();
      injector.drain(1000);
      await new Promise<void>((resolve) => grpcServer.tryShutdown(() => resolve()));
      injector.destroy();
      for (const s of sockets) s.destroy();
      await closed;
      snapshotter.close();
    })()),
  };
}
