/**
 * A unix socket only root (or one named owner) can use, with limits: what
 * `stratafs daemon --socket` and `stratafs graphdriver` listen on. Whoever talks to either
 * can mount any directory anywhere, so:
 *
 * - The socket is never reachable by anyone else, not even for an instant. It is bound
 *   inside a private directory (`.NAME.bind/`, mode 0700, next to the socket so both are on
 *   one filesystem), made mode 0600 there, and renamed into place. The alternative, a
 *   umask around bind(), is not used: the umask is process-wide, and this process has
 *   other threads (libuv's pool, the FUSE readers) that may create files at that moment.
 *   The private directory lives as long as the server: libuv unlinks the bound name
 *   (inside it) on close, and that name must never be one somebody else could create.
 * - Every connection's peer is checked with SO_PEERCRED (the kernel's record of who
 *   called connect()): root, this process's own uid, or the uid given as `allowUid`; anyone else is disconnected
 *   before a byte is read. This holds even if the socket's mode were opened up.
 * - Limits: at most `maxConnections` at once (more are closed by the kernel-side accept
 *   as they come), requests of at most `maxRequestBytes` (the callers enforce it where
 *   they read), and `idleTimeoutMs` to deliver a whole request (see `RequestDeadline`).
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import createDebug from 'debug';
import { native } from '../native';
import { StratafsError } from '../errors';

const log = createDebug('stratafs:server:socket');

export interface SocketLimits {
  /** connections open at once; more are closed right away */
  maxConnections: number;
  /** bytes of one request (the daemon's JSON line; the plugin's headers and JSON bodies) */
  maxRequestBytes: number;
  /** time a connection has to send a whole request, from connecting or its last reply */
  idleTimeoutMs: number;
}

export const DEFAULT_LIMITS: SocketLimits = {
  maxConnections: 128,
  maxRequestBytes: 256 * 1024,
  idleTimeoutMs: 30_000,
};

export interface SocketAccess {
  /** a uid besides root allowed to connect (e.g. the owner of a rootless setup) */
  allowUid?: number;
}

type Failure = (msg: string) => StratafsError;

/** Parses a positive integer option value (`what` names it in the error). */
export function positiveInt(value: string, what: string, fail: Failure): number {
  if (!/^[0-9]{1,12}$/.test(value) || Number(value) <= 0) throw fail(`${what} must be a positive integer, got "${value}"`);
  return Number(value);
}

/** Parses a uid (a non-negative integer). */
export function uidOption(value: string, what: string, fail: Failure): number {
  if (!/^[0-9]{1,10}$/.test(value) || Number(value) > 0xfffffffe) throw fail(`${what} must be a uid, got "${value}"`);
  return Number(value);
}

/** The fd of an accepted unix connection (libuv's Pipe handle has one on Linux). */
function socketFd(sock: net.Socket): number {
  const fd = (sock as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
  return typeof fd === 'number' ? fd : -1;
}

/**
 * Whether the peer of `sock` may talk to us: root, the uid this process runs as (a
 * server started by an ordinary user serves that user), or `access.allowUid`. Refused
 * peers are destroyed.
 */
export function admitPeer(sock: net.Socket, access: SocketAccess): boolean {
  const fd = socketFd(sock);
  let uid: number | undefined;
  let pid = 0;
  try {
    if (fd >= 0) ({ uid, pid } = native.peerCred(fd));
  } catch (e) {
    log('peer credentials: %s', (e as Error).message);
  }
  if (uid !== undefined && (uid === 0 || uid === process.getuid?.() || uid === access.allowUid)) return true;
  log('refused a connection from uid %s (pid %d)', uid ?? 'unknown', pid);
  sock.destroy();
  return false;
}

/**
 * A deadline for one request: armed when a connection opens and again after each reply,
 * cleared once the request is in. A client that sends nothing, or sends a request slowly
 * (a byte now and then resets no timer here), is disconnected when it runs out.
 */
export class RequestDeadline {
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly sock: net.Socket, private readonly ms: number) {}

  arm(): void {
    this.clear();
    this.timer = setTimeout(() => {
      log('closing a connection that sent no whole request in %d ms', this.ms);
      this.sock.destroy();
    }, this.ms);
    this.timer.unref();
  }

  clear(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }
}

/** Whether something answers on the unix socket `p`. */
function alive(p: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.connect(p, () => {
      c.destroy();
      resolve(true);
    });
    c.on('error', () => resolve(false));
  });
}

/** The private directory a socket is bound in (see the top of this file). */
function bindDir(socketPath: string): string {
  const dir = path.join(path.dirname(socketPath), `.${path.basename(socketPath)}.bind`);
  try {
    fs.mkdirSync(dir, { mode: 0o700 });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    // left by a process that died: reuse it only if it is ours and private
    const st = fs.lstatSync(dir);
    if (!st.isDirectory() || st.uid !== process.getuid?.() || (st.mode & 0o077) !== 0) {
      throw new StratafsError('STRATAFS_ERR_SERVER', `${dir} exists and is not a private directory of this user: remove it`);
    }
    for (const n of fs.readdirSync(dir)) fs.rmSync(path.join(dir, n), { force: true });
  }
  fs.chmodSync(dir, 0o700);
  return dir;
}

export interface GuardedListener {
  /** stops accepting, closes the socket, removes it and the private directory */
  close(): Promise<void>;
}

/**
 * Listens with `server` on `socketPath`, private from the start. A stale socket left by a
 * dead process is replaced; one a live process answers on is an error (`inUse`).
 */
export async function listenGuarded(server: net.Server, socketPath: string, inUse: () => StratafsError): Promise<GuardedListener> {
  if (fs.existsSync(socketPath) && await alive(socketPath)) throw inUse();
  const dir = bindDir(socketPath);
  const bound = path.join(dir, 's');
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(bound, () => {
      server.off('error', reject);
      resolve();
    });
  });
  try {
    fs.chmodSync(bound, 0o600);
    fs.renameSync(bound, socketPath);
  } catch (e) {
    await new Promise<void>((resolve) => server.close(() => resolve()));
    fs.rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  return {
    close: async () => {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      fs.rmSync(socketPath, { force: true });
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
