/**
 * The unix-socket front of a MountServer (`stratafs daemon --socket PATH`), and the
 * client side used by `stratafs -o server=PATH,... MOUNTPOINT`. See protocol.ts.
 */
import * as net from 'node:net';
import createDebug from 'debug';
import { StratafsError } from '../errors';
import { MountServer } from './mount-server';
import { fromReply, toReply, verdictOfError, type Verdict } from '../mount/verdict';
import { parseRequest, type Reply, type Request } from './protocol';
import { mountFromArgv } from './argv';
import { DEFAULT_LIMITS, RequestDeadline, admitPeer, listenGuarded, type SocketAccess, type SocketLimits } from './guarded-socket';

const log = createDebug('stratafs:server:socket');

async function answer(mounts: MountServer, req: Request): Promise<Reply> {
  switch (req.op) {
    case 'mount': {
      const m = await mounts.mount(req.spec);
      return toReply({ kind: 'ready', notice: m.notice });
    }
    case 'unmount':
      await mounts.unmount(req.mountpoint);
      return { ok: true };
    case 'list':
      return { ok: true, mounts: mounts.list() };
    case 'mount-argv': {
      const m = await mounts.mount(mountFromArgv(req.argv, req.cwd));
      return toReply({ kind: 'ready', notice: m.notice });
    }
  }
}

/** The reply to a request that failed: its verdict (src/mount/verdict.ts). */
function failure(e: unknown): Reply {
  return toReply(verdictOfError(e));
}

export interface SocketServer {
  readonly mounts: MountServer;
  /** stops listening, unmounts everything, removes the socket */
  stop(): Promise<void>;
}

export interface ListenOptions extends SocketAccess {
  mounts?: MountServer;
  limits?: Partial<SocketLimits>;
}

/**
 * Listens on `path` (a stale socket is replaced, a live one is an error), private from the
 * start, with limits (guarded-socket.ts). One request per connection: it must arrive whole
 * within the idle timeout; the reply may take as long as the mount does.
 */
export async function listenSocket(path: string, opts: ListenOptions = {}): Promise<SocketServer> {
  const mounts = opts.mounts ?? new MountServer();
  const limits = { ...DEFAULT_LIMITS, ...opts.limits };
  const server = net.createServer((conn) => {
    if (!admitPeer(conn, opts)) return;
    const deadline = new RequestDeadline(conn, limits.idleTimeoutMs);
    deadline.arm();
    const chunks: Buffer[] = [];
    let size = 0;
    const reply = (r: Reply): void => {
      conn.end(`${JSON.stringify(r)}\n`);
    };
    conn.on('error', (e) => log('connection: %s', e.message));
    conn.on('close', () => deadline.clear());
    const onData = (chunk: Buffer): void => {
      const nl = chunk.indexOf(0x0a);
      const take = nl < 0 ? chunk : chunk.subarray(0, nl);
      size += take.length;
      if (size > limits.maxRequestBytes) {
        conn.off('data', onData);
        deadline.clear();
        reply({ ok: false, error: `request larger than ${limits.maxRequestBytes} bytes` });
        return;
      }
      chunks.push(take);
      if (nl < 0) return;
      conn.off('data', onData);
      deadline.clear();
      void (async () => {
        try {
          const req = parseRequest(Buffer.concat(chunks).toString('utf8'));
          log('%s %s', req.op, req.op === 'mount' ? req.spec.mountpoint : req.op === 'unmount' ? req.mountpoint : req.op === 'mount-argv' ? req.argv.join(' ') : '');
          reply(await answer(mounts, req));
        } catch (e) {
          log('failed: %s', (e as Error).message);
          reply(failure(e));
        }
      })();
    };
    conn.on('data', onData);
  });
  server.maxConnections = limits.maxConnections;
  const listener = await listenGuarded(server, path,
    () => new StratafsError('STRATAFS_ERR_SERVER', `${path} is in use by a running stratafs daemon`));
  let stopping: Promise<void> | undefined;
  return {
    mounts,
    stop: () => (stopping ??= (async () => {
      try {
        await listener.close();
      } finally {
        await mounts.closeAll();
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

/** One byte per character: how mount-argv strings travel (see argv.ts). */
const asBytes = (s: string): string => Buffer.from(s, 'utf8').toString('latin1');

/**
 * Asks the daemon at `path` for the mount command line `argv` (run in `cwd`), exactly
 * the request of the C client (native-bindings/src/client.c), so both get the same
 * verdict; a daemon that is not there is an error verdict.
 */
export async function mountVerdict(path: string, argv: string[], cwd: string): Promise<Verdict> {
  try {
    const r = await request(path, { op: 'mount-argv', argv: argv.map(asBytes), cwd: asBytes(cwd) });
    return fromReply(r);
  } catch (e) {
    return verdictOfError(e);
  }
}
