/**
 * The plugin's HTTP server on a unix socket. dockerd POSTs to /Plugin.Activate and
 * /GraphDriver.*; the route table (routes.ts) says how each body and reply look.
 *
 * Errors: dockerd's plugin client reads any non-200 reply as `{"Err": "..."}`, so every
 * failure is one such object with status 500 (400 for a request that cannot be read).
 */
import * as http from 'node:http';
import * as net from 'node:net';
import type { Readable } from 'node:stream';
import createDebug from 'debug';
import { ByteJson, ROUTES } from './routes';
import type { Driver } from './driver';
import { StratafsError } from '../errors';
import { DEFAULT_LIMITS, RequestDeadline, admitPeer, listenGuarded, type SocketAccess, type SocketLimits } from '../server/guarded-socket';

const log = createDebug('stratafs:graphdriver:http');
const CONTENT_TYPE = 'application/vnd.docker.plugins.v1+json';

class BadRequest extends Error {}

function reply(res: http.ServerResponse, status: number, body: object): void {
  const bytes = body instanceof ByteJson
    ? Buffer.from(JSON.stringify(body.body), 'latin1')
    : Buffer.from(JSON.stringify(body), 'utf8');
  res.writeHead(status, { 'Content-Type': CONTENT_TYPE, 'Content-Length': bytes.length });
  res.end(bytes);
}

/** A JSON body of at most `limits.maxRequestBytes`, read within `limits.idleTimeoutMs`. */
async function readJson(req: Readable, limits: SocketLimits): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let size = 0;
  const timer = setTimeout(() => req.destroy(new BadRequest(`request body not sent within ${limits.idleTimeoutMs} ms`)), limits.idleTimeoutMs);
  try {
    for await (const c of req as AsyncIterable<Buffer>) {
      size += c.length;
      if (size > limits.maxRequestBytes) throw new BadRequest(`request body larger than ${limits.maxRequestBytes} bytes`);
      chunks.push(c);
    }
  } finally {
    clearTimeout(timer);
  }
  const text = Buffer.concat(chunks).toString('utf8').trim();
  if (text === '') return {};
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new BadRequest(`malformed JSON request: ${(e as Error).message}`);
  }
  if (v === null) return {};
  if (typeof v !== 'object' || Array.isArray(v)) throw new BadRequest('the JSON request must be an object');
  return v as Record<string, unknown>;
}

export function handler(driver: Driver, limits: SocketLimits = DEFAULT_LIMITS): http.RequestListener {
  return (req, res) => {
    const url = new URL(req.url ?? '/', 'http://plugin');
    const route = ROUTES[url.pathname];
    const started = Date.now();
    const fail = (e: unknown): void => {
      const bad = e instanceof BadRequest;
      const msg = e instanceof Error ? e.message : String(e);
      log('%s failed: %s', url.pathname, msg);
      req.resume();
      if (res.headersSent) {
        res.destroy(e instanceof Error ? e : undefined);
        return;
      }
      reply(res, bad ? 400 : 500, { Err: msg });
    };
    if (!route) {
      fail(new StratafsError('STRATAFS_ERR_PLUGIN', `unknown endpoint ${url.pathname}`));
      return;
    }
    if (req.method !== 'POST') {
      fail(new BadRequest(`${url.pathname} takes POST, not ${req.method}`));
      return;
    }
    const done = (): void => log('%s %s (%d ms)', url.pathname, res.statusCode, Date.now() - started);
    res.on('finish', done);
    void (async () => {
      switch (route.kind) {
        case 'json':
          reply(res, 200, await route.handle(await readJson(req, limits), driver));
          return;
        case 'tar-in':
          reply(res, 200, await route.handle(url.searchParams, req, driver));
          return;
        case 'tar-out': {
          const tar = route.handle(await readJson(req, limits), driver);
          res.writeHead(200, { 'Content-Type': 'application/x-tar' });
          tar.on('error', (e) => {
            log('%s: stream failed: %s', url.pathname, e.message);
            res.destroy(e);
          });
          // a client gone before the end: the export stops and lets go of its fds
          res.once('close', () => {
            if (!res.writableFinished) tar.destroy();
          });
          tar.pipe(res);
          return;
        }
      }
    })().catch(fail);
  };
}

export interface ListenOptions extends SocketAccess {
  limits?: Partial<SocketLimits>;
}

export interface PluginListener {
  readonly http: http.Server;
  /** stops accepting, drops every connection, removes the socket */
  close(): Promise<void>;
}

/**
 * Listens on `socketPath`, private from the start (guarded-socket.ts: a stale socket file
 * left by a dead plugin is replaced, a live one is an error). Connections are accepted by
 * a plain net.Server that checks the peer and hands them to the HTTP server. Each
 * connection has the idle timeout to send a request's headers, from connecting or from
 * its last reply; a JSON body has it too; ApplyDiff bodies and Diff replies stream as
 * long as they take.
 */
export async function listen(socketPath: string, driver: Driver, opts: ListenOptions = {}): Promise<PluginListener> {
  const limits = { ...DEFAULT_LIMITS, ...opts.limits };
  const deadlines = new WeakMap<object, RequestDeadline>();
  const server = http.createServer(handler(driver, limits));
  server.requestTimeout = 0;
  server.headersTimeout = 0;
  server.keepAliveTimeout = 0;
  server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    const deadline = deadlines.get(req.socket);
    deadline?.clear();
    res.on('finish', () => deadline?.arm());
  });
  // the HTTP server never listens itself, so it does not track these: we do, to end them at close
  const open = new Set<net.Socket>();
  const front = net.createServer((sock) => {
    if (!admitPeer(sock, opts)) return;
    open.add(sock);
    sock.on('close', () => open.delete(sock));
    const deadline = new RequestDeadline(sock, limits.idleTimeoutMs);
    deadlines.set(sock, deadline);
    deadline.arm();
    sock.on('close', () => deadline.clear());
    server.emit('connection', sock);
  });
  front.maxConnections = limits.maxConnections;
  const listener = await listenGuarded(front, socketPath,
    () => new StratafsError('STRATAFS_ERR_PLUGIN', `${socketPath} is in use by a running plugin`));
  return {
    http: server,
    close: async () => {
      const closed = listener.close();
      for (const sock of open) sock.destroy();
      await closed;
    },
  };
}
