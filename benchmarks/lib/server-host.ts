/**
 * A child program that serves many stratafs mounts from one process, through the
 * project's MountServer (src/server), for the layer-sharing measurement. It reads one
 * JSON mount spec per line on stdin and answers each with one line, "ok" or
 * "error: ...". It exits once stdin is closed and every mount has been unmounted (by
 * someone else: this process never touches its mounts).
 *
 *   node dist/benchmarks/lib/server-host.js
 */
import * as path from 'node:path';
import * as readline from 'node:readline';

interface ServedMount {
  ended: Promise<void>;
}
interface MountServerLike {
  mount(spec: Record<string, unknown>): Promise<ServedMount>;
}

/** The server module, if this build has one (resolved at run time: it may not exist). */
export const SERVER_MODULE = path.resolve(__dirname, '..', '..', 'src', 'server', 'mount-server.js');

function main(): void {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const mod = require(SERVER_MODULE) as { MountServer: new () => MountServerLike };
  const server = new mod.MountServer();
  const ended: Promise<void>[] = [];
  const lines = readline.createInterface({ input: process.stdin });
  let queue = Promise.resolve();
  lines.on('line', (line) => {
    queue = queue.then(async () => {
      try {
        const m = await server.mount(JSON.parse(line) as Record<string, unknown>);
        ended.push(m.ended);
        process.stdout.write('ok\n');
      } catch (e) {
        process.stdout.write(`error: ${(e instanceof Error ? e.message : String(e)).split('\n')[0]}\n`);
      }
    });
  });
  lines.on('close', () => {
    void queue.then(() => Promise.all(ended)).then(() => process.exit(0));
  });
}

if (require.main === module) main();
