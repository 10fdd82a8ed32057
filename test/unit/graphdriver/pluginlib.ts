// Talking to the graph-driver plugin over its unix socket, as dockerd does.
import { spawn, type ChildProcess } from 'node:child_process';
import * as http from 'node:http';
import { plainExec } from '../../lib/proc';
import { STRATAFS_BIN } from '../../lib/mounts';
import type { Teardown } from '../../lib/tmp';

export interface Reply {
  status: number;
  body: Buffer;
  json(): Record<string, unknown>;
}

export function post(socketPath: string, endpoint: string, body?: string | Buffer): Promise<Reply> {
  return new Promise((resolve, reject) => {
    // a connection per request: a pooled one may belong to a plugin a test just stopped
    const req = http.request({ socketPath, path: endpoint, method: 'POST', agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const b = Buffer.concat(chunks);
        resolve({ status: res.statusCode ?? 0, body: b, json: () => JSON.parse(b.toString()) as Record<string, unknown> });
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** POST a JSON request; the parsed reply plus its status. */
export async function call(socketPath: string, endpoint: string, req: unknown = {}): Promise<{ status: number; reply: Record<string, unknown> }> {
  const r = await post(socketPath, `/GraphDriver.${endpoint}`, JSON.stringify(req));
  return { status: r.status, reply: r.json() };
}

/**
 * `stratafs graphdriver --socket SOCK` as its own process, stopped (SIGTERM) when the
 * test ends; resolves once it listens.
 */
export async function startPlugin(t: Teardown, sock: string): Promise<ChildProcess> {
  const [cmd, args] = plainExec([STRATAFS_BIN, 'graphdriver', '--socket', sock]);
  const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    return new Promise<void>((r) => (child.exitCode !== null || child.signalCode !== null ? r() : child.once('exit', () => r())));
  });
  for (let i = 0; i < 200 && !stderr.includes('listening'); i++) {
    if (child.exitCode !== null) throw new Error(`plugin exited: ${stderr}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  if (!stderr.includes('listening')) throw new Error(`plugin did not start: ${stderr}`);
  return child;
}
