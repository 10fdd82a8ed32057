/**
 * The unix-socket front of a MountServer (`stratafs daemon --socket PATH`), and the
 * client side used by `stratafs -o server=PATH,... MOUNTPOINT`. See protocol.ts.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import createDebug from 'debug';
import { StratafsError } from '../errors';
import { MountServer } from './mount-server';
import type { MountSpec } from '../mount/spec';
import { parseRequest, type Reply, type Request } from './protocol';
import { mountFromArgv } from './argv';

const log = createDebug('stratafs:server:socket');
const MAX_REQUEST = 1 << 20;

async function answer(mounts: MountServer, req: Request): Promise<Reply> {
  switch (req.op) {
    case 'mount': {
      const m = await mounts.mount(req.spec);
      return m.notice ? { ok: true, notice: m.notice } : { ok: true };
    }
    case 'unmount':
      await mounts.unmount(req.mountpoint);
      return { ok: true };
    case 'list':
      return { ok: true, mounts: mounts.list() };
    case 'mount-argv': {
      const m = await mounts.mount(mountFromArgv(req.argv, req.cwd));
      return m.notice ? { ok: true, notice: m.notice } : { ok: true };
    }
  }
}

/** The reply to a request that failed: one line; `usage` for a wrong command line. */
function failure(e: unknown): Reply {
  const error = (e instanceof Error ? e.message : String(e)).split('\n')[0];
  const code = (e as { code?: unknown } | null)?.code;
  return code === 'STRATAFS_ERR_USAGE' || code === 'STRATAFS_ERR_OPTION' ? { ok: false, error, usage: true } : { ok: false, error };
}

export interface SocketServer {
  readonly mounts: MountServer;
  /** stops listening, unmounts everything, removes the socket */
  stop(): Promise<void>;
}

/** Listens on `path` (a stale socket is replaced, a live one is an error). */
export async function listenSocket(path: string, mounts = new MountServer()): Promise<SocketServer> {
  if (fs.existsSync(path)) {
    const alive = await new Promise<boolean>((resolve) => {
      const c = net.connect(path, () => {
        c.destroy();
        resolve(true);
      });
      c.on('error', () => resolve(false));
    });
    if (alive) throw new StratafsError('STRATAFS_ERR_SERVER', `${path} is in use by a running stratafs daemon`);
    fs.unlinkSync(path);
  }
  const server = net.createServer((conn) => {
    let buf = '';
    const reply = (r: Reply): void => {
      conn.end(`${JSON.stringify(r)}\n`);
    };
    conn.setEncoding('utf8');
    conn.on('error', (e) => log('connection: %s', e.message));
    conn.on('data', (chunk: string) => {
      buf += chunk;
      if (buf.length > MAX_REQUEST) {
        reply({ ok: false, error: 'request too large' });
        return;
      }
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      conn.removeAllListeners('data');
      void (async () => {
        try {
          const req = parseRequest(buf.slice(0, nl));
          log('%s %s', req.op, req.op === 'mount' ? req.spec.mountpoint : req.op === 'unmount' ? req.mountpoint : req.op === 'mount-argv' ? req.argv.join(' ') : '');
          reply(await answer(mounts, req));
        } catch (e) {
          log('failed: %s', (e as Error).message);
          reply(failure(e));
        }
      })();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => {
      server.off('error', reject);
      resolve();
    });
  });
  fs.chmodSync(path, 0o600);
  let stopping: Promise<void> | undefined;
  return {
    mounts,
    stop: () => (stopping ??= (async () => {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      try {
        await mounts.closeAll();
      } finally {
        fs.rmSync(path, { force: true });
      }
    })()),
  };
}

/** Sends one request to a daemon; a daemon that is not there is a clear error. */
export function request(path: string, req: Request): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const conn = net.connect(path);
    let buf = '';
    conn.setEncoding('utf8');
    conn.on('connect', () => conn.write(`${JSON.stringify(req)}\n`));
    conn.on('data', (c: string) => (buf += c));
    conn.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT' || e.code === 'ECONNREFUSED') {
        reject(new StratafsError('STRATAFS_ERR_SERVER',
          `no stratafs daemon listens on ${path} (start one with: stratafs daemon --socket ${path})`));
      } else reject(new StratafsError('STRATAFS_ERR_SERVER', `stratafs daemon at ${path}: ${e.message}`));
    });
    conn.on('end', () => {
      try {
        resolve(JSON.parse(buf) as Reply);
      } catch {
        reject(new StratafsError('STRATAFS_ERR_SERVER', `stratafs daemon at ${path} gave no answer`));
      }
    });
  });
}

/** Mounts through a daemon; resolves with its notice, if any. */
export async function mountVia(path: string, spec: MountSpec): Promise<string | undefined> {
  const r = await request(path, { op: 'mount', spec });
  if (!r.ok) throw new StratafsError('STRATAFS_ERR_SERVER', r.error);
  return r.notice;
}
