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
import { homeFileFor, recallHome, rememberHome } from './home-memory';
import type { SocketAccess, SocketLimits } from '../server/guarded-socket';

const log = createDebug('stratafs:graphdriver');

export interface PluginOptions {
  /** the socket dockerd connects to: /run/docker/plugins/NAME.sock */
  socket: string;
  /** a Home to open before dockerd calls Init (optional; else the one of the last Init) */
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
  const homeFile = homeFileFor(opts.socket);
  const driver = new Driver(mounts, {
    onProgress,
    onImported: onProgress && ((id, r) => process.stderr.write(
      `\rstratafs graphdriver: imported ${id.slice(0, 12)}: ${r.entries} entries, ${(r.size / 1048576).toFixed(1)} MiB\n`)),
    onInit: (home) => rememberHome(homeFile, home),
    onWarning: (id, msg) => process.stderr.write(`stratafs graphdriver: warning: layer ${id.slice(0, 12)}: ${msg}\n`),
  });
  // dockerd sends Init only when it starts: a plugin restarted under it serves the Home
  // of the last Init (home-memory.ts, written by onInit) unless --home says otherwise
  const home = opts.home ?? recallHome(homeFile);
  if (home) {
    driver.init(home, 'start');
    if (!opts.home) log('serving the Home of the last Init: %s', home);
  }
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
