/**
 * The plugin process: one MountServer, one Driver, the HTTP server on the socket; a
 * progress line for long imports when stderr is a terminal; a clean end on SIGTERM /
 * SIGINT (stop listening, unmount every layer, remove the socket).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import createDebug from 'debug';
import { MountServer } from '../server/mount-server';
import { Driver } from './driver';
import { listen, type PluginListener } from './http';
import type { SocketAccess, SocketLimits } from '../server/guarded-socket';

const log = createDebug('stratafs:graphdriver');

export interface PluginOptions {
  /** the socket dockerd connects to: /run/docker/plugins/NAME.sock */
  socket: string;
  /** a Home to initialise before dockerd calls Init (optional) */
  home?: string;
  /** who besides root may connect, and the socket's limits */
  access?: SocketAccess;
  limits?: Partial<SocketLimits>;
}

export interface RunningPlugin {
  driver: Driver;
  server: PluginListener;
  /** stops listening, unmounts everything, removes the socket */
  stop(): Promise<void>;
}

/** A progress line on a terminal, at most a few times a second. */
function progress(): ((id: string, bytes: number, entries: number) => void) | undefined {
  if (!process.stderr.isTTY) return undefined;
  let last = 0;
  return (id, bytes, entries) => {
    const now = Date.now();
    if (now - last < 250) return;
    last = now;
    process.stderr.write(`\rstratafs graphdriver: importing ${id.slice(0, 12)}: ${entries} entries, ${(bytes / 1048576).toFixed(1)} MiB`);
  };
}

export async function startPlugin(opts: PluginOptions): Promise<RunningPlugin> {
  const mounts = new MountServer();
  const onProgress = progress();
  const driver = new Driver(mounts, {
    onProgress,
    onImported: onProgress && ((id, r) => process.stderr.write(
      `\rstratafs graphdriver: imported ${id.slice(0, 12)}: ${r.entries} entries, ${(r.size / 1048576).toFixed(1)} MiB\n`)),
  });
  if (opts.home) driver.init(opts.home);
  fs.mkdirSync(path.dirname(opts.socket), { recursive: true });
  const server = await listen(opts.socket, driver, { ...opts.access, limits: opts.limits });
  log('listening on %s', opts.socket);
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      try {
        await server.close();
      } finally {
        await mounts.closeAll();
      }
    })();
    return stopping;
  };
  return { driver, server, stop };
}
