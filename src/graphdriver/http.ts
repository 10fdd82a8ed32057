/**
 * The plugin's HTTP server on a unix socket. dockerd POSTs to /Plugin.Activate and
 * /GraphDriver.*; the route table (routes.ts) says how each body and reply look.
 *
 * Errors: dockerd's plugin client reads any non-200 reply as `{"Err": "..."}`, so every
 * failure is one such object with status 500 (400 for a request that cannot be read).
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { Readable } from 'node:stream';
import createDebug from 'debug';
import { ByteJson, ROUTES } from './routes';
import type { Driver } from './driver';
import { StratafsError } from '../errors';

const log = createDebug('stratafs:graphdriver:http');
const CONTENT_TYPE = 'application/vnd.docker.plugins.v1+json';
/** JSON requests are small; a bigger body is refused */
const MAX_JSON = 1 << 20;

class BadRequest extends Error {}

function reply(res: http.ServerResponse, status: number, body: object): void {
  const bytes = body instanceof ByteJson
    ? Buffer.from(JSON.stringify(body.body), 'latin1')
    : Buffer.from(JSON.stringify(body), 'utf8');
  res.writeHead(status, { 'Content-Type': CONTENT_TYPE, 'Content-Length': bytes.length });
  res.end(bytes);
}

async function readJson(req: Readable): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req as AsyncIterable<Buffer>) {
    size += c.length;
    if (size > MAX_JSON) throw new BadRequest(`request body larger than ${MAX_JSON} bytes`);
    chunks.push(c);
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

export function handler(driver: Driver): http.RequestListener {
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
          reply(res, 200, await route.handle(await readJson(req), driver));
          return;
        case 'tar-in':
          reply(res, 200, await route.handle(url.searchParams, req, driver));
          return;
        case 'tar-out': {
          const tar = route.handle(await readJson(req), driver);
          res.writeHead(200, { 'Content-Type': 'application/x-tar' });
          tar.on('error', (e) => {
            log('%s: stream failed: %s', url.pathname, e.message);
            res.destroy(e);
          });
          tar.pipe(res);
          return;
        }
      }
    })().catch(fail);
  };
}

/**
 * Listens on `socketPath` (a stale socket file left by a dead plugin is replaced; a live
 * one is an error). Resolves with the server once listening.
 */
export async function listen(socketPath: string, driver: Driver): Promise<http.Server> {
  if (fs.existsSync(socketPath)) {
    const alive = await new Promise<boolean>((resolve) => {
      const probe = http.request({ socketPath, path: '/Plugin.Activate', method: 'POST' }, (r) => {
        r.resume();
        resolve(true);
      });
      probe.on('error', () => resolve(false));
      probe.end();
    });
    if (alive) throw new StratafsError('STRATAFS_ERR_PLUGIN', `${socketPath} is in use by a running plugin`);
    fs.unlinkSync(socketPath);
  }
  const server = http.createServer(handler(driver));
  // ApplyDiff bodies and Diff replies can take long: no request timeout
  server.requestTimeout = 0;
  server.headersTimeout = 0;
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => {
      server.off('error', reject);
      resolve();
    });
  });
  fs.chmodSync(socketPath, 0o600);
  return server;
}
