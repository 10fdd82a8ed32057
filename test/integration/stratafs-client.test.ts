// The C client (native-bindings/src/client.c) against a fake daemon in this process (no
// mount is involved): the request it sends (argv bytes one per character, escapes, the
// cwd, the socket found in -o lists or STRATAFS_SERVER) and how it reads replies
// (notices, errors, usage, escapes and non-ASCII text, garbage, no answer).
import t from 'tap';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { REPO_ROOT } from '../lib/mounts';
import { run } from '../lib/proc';
import { tempDir } from '../lib/tmp';

const CLIENT = path.join(REPO_ROOT, 'native-bindings', 'build', 'Release', 'stratafs-client');

interface Fake {
  /** the request lines received, parsed */
  requests: { op: string; argv: string[]; cwd: string }[];
  close(): Promise<void>;
}

/** A unix socket server that answers every request with REPLY (raw text; null: close). */
async function fakeDaemon(sock: string, reply: () => string | null): Promise<Fake> {
  const requests: Fake['requests'] = [];
  const server = net.createServer((c) => {
    let buf = '';
    c.setEncoding('utf8');
    c.on('data', (d: string) => {
      buf += d;
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      requests.push(JSON.parse(buf.slice(0, nl)) as Fake['requests'][number]);
      const r = reply();
      if (r === null) c.destroy();
      else c.end(r);
    });
  });
  await new Promise<void>((r) => server.listen(sock, r));
  return { requests, close: () => new Promise<void>((r) => server.close(() => r())) };
}

t.test('stratafs-client', async (t) => {
  t.ok(fs.existsSync(CLIENT), 'built with the addon');
  const dir = await tempDir(t, 'client');
  const sock = path.join(dir, 'a,b.sock');
  let next: string | null = '{"ok":true}\n';
  const fake = await fakeDaemon(sock, () => next);
  t.teardown(() => fake.close());
  const env = { PATH: process.env.PATH };
  const client = (args: string[], e: NodeJS.ProcessEnv = env) => run(CLIENT, args, { cwd: dir, env: e, timeoutMs: 30_000 });
  const escaped = sock.replace(/,/g, '\\,');

  const r = await client(['-o', `lowerdir=l/A,server=${escaped}`, '-o', 'context="a,b"', 'm n']);
  t.equal(r.code, 0, `a socket path with an escaped comma ${r.stderr}`);
  t.equal(r.stderr, '', 'nothing said');
  t.same(fake.requests.at(-1), { op: 'mount-argv', argv: ['-o', `lowerdir=l/A,server=${escaped}`, '-o', 'context="a,b"', 'm n'], cwd: fs.realpathSync(dir) });

  // bytes that are not UTF-8, quotes, backslashes, control characters: exactly, one byte per character
  const odd = await run('/bin/sh', ['-c', `exec "$0" "-oserver=$1" "$(printf 'q"\\\\\\t\\001\\377\\303\\251')"`, CLIENT, escaped], { cwd: dir, env, timeoutMs: 30_000 });
  t.equal(odd.code, 0, `-oLIST form ${odd.stderr}`);
  const sent = fake.requests.at(-1)!.argv[1];
  t.same([...Buffer.from(sent, 'latin1')], [...Buffer.from('q"\\\t\x01'), 0xff, 0xc3, 0xa9], 'argv bytes arrive exactly');

  next = '{"ok":true,"notice":"stale \\"mnt\\" \\\\ cleared \\u00e9 \\ud83d\\ude00 ok","mounts":[{"a":[1,2.5e3,null,false]}]}\n';
  const n = await client(['-o', `lowerdir=/l`, '/m'], { ...env, STRATAFS_SERVER: sock });
  t.equal(n.code, 0, 'STRATAFS_SERVER names the socket');
  t.equal(n.stderr, 'stratafs: stale "mnt" \\ cleared é 😀 ok\n', 'a notice: one line, escapes and non-ASCII decoded');

  next = '{"ok":false,"error":"unknown option \\"x\\"","usage":true}\n';
  const u = await client(['-o', `server=${escaped}`, '/m']);
  t.equal(u.code, 2, 'usage: exit 2');
  t.equal(u.stderr, 'stratafs: unknown option "x"\n');

  next = '{"error":"cannot mount","ok":false}\n';
  const e = await client(['-o', `server=${escaped}`, '/m']);
  t.equal(e.code, 1, 'error: exit 1');
  t.equal(e.stderr, 'stratafs: cannot mount\n');

  for (const [what, reply] of [['garbage', 'hello\n'], ['no ok member', '{"error":"x"}\n'], ['no answer', null]] as const) {
    next = reply;
    const g = await client(['-o', `server=${escaped}`, '/m']);
    t.equal(g.code, 1, `${what}: exit 1`);
    t.equal(g.stderr, `stratafs: stratafs daemon at ${sock} gave no answer\n`, `${what}: one line`);
  }

  const none = await client(['-o', 'lowerdir=/l', '/m']);
  t.equal(none.code, 2, 'no socket named: exit 2');
  t.match(none.stderr, /^stratafs: no server=PATH option and no STRATAFS_SERVER in the environment\n$/);
  const long = await client(['-o', `server=/${'x'.repeat(200)}`, '/m']);
  t.equal(long.code, 1, 'a socket path too long for a unix socket');
  t.match(long.stderr, /^stratafs: the socket path \S+ is too long \(at most 107 bytes\)\n$/);
});
