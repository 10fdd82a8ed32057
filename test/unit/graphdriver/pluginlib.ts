// Talking to the graph-driver plugin over its unix socket, as dockerd does.
import * as http from 'node:http';

export interface Reply {
  status: number;
  body: Buffer;
  json(): Record<string, unknown>;
}

export function post(socketPath: string, endpoint: string, body?: string | Buffer): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath, path: endpoint, method: 'POST' }, (res) => {
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
