/**
 * The two sockets that can mount anything (`stratafs daemon --socket` and
 * `stratafs graphdriver`) against an unprivileged local user (uid 65534):
 *
 * - started under umask 000 while that user spins on connect(), not one connect succeeds
 *   (the socket is never reachable, not even between bind() and a chmod);
 * - with the socket's mode opened up on purpose (0666), that user is still refused
 *   (SO_PEERCRED), and let in only when named with --allow-uid;
 * - limits: connections beyond --max-connections are closed, a connection that sends no
 *   whole request is closed after --idle-timeout, an oversized request is refused, and
 *   many half-sent requests do not grow the daemon's memory without bound.
 */
import t from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { tempDir, type Teardown } from '../lib/tmp';
import { plainExec, spawnListening } from '../lib/proc';
import { STRATAFS_BIN } from '../lib/mounts';

const NOBODY = 65534;

/** Connects to a unix socket as uid/gid 65534 in a loop until SIGTERM; prints "OK TRIES". */
const SPINNER = `
import os, signal, socket, sys
path = sys.argv[1]
os.setgroups([]); os.setgid(${NOBODY}); os.setuid(${NOBODY})
assert os.getuid() == ${NOBODY}
done = False
def stop(*_):
    global done
    done = True
signal.signal(signal.SIGTERM, stop)
ok = tries = 0
print('ready', flush=True)
while not done:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        ok += 1
    except OSError:
        pass
    finally:
        s.close()
    tries += 1
print(ok, tries, flush=True)
`;

/** As uid 65534: connect, send LINE, print what came back (empty when refused). */
const ASK = `
import os, socket, sys
os.setgroups([]); os.setgid(${NOBODY}); os.setuid(${NOBODY})
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(10)
s.connect(sys.argv[1])
got = b''
try:
    s.sendall(sys.argv[2].encode())
    while True:
        b = s.recv(65536)
        if not b:
            break
        got += b
except OSError as e:
    got += ('[' + type(e).__name__ + ']').encode()
print(repr(got), flush=True)
`;

function python(t: Teardown, script: string, args: string[]): { child: ChildProcess; out: () => string; exited: Promise<number | null> } {
  const child = spawn('python3', ['-c', script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return { child, out: () => out, exited };
}

type Kind = 'daemon' | 'graphdriver';

/** Starts `stratafs KIND --socket SOCK ...` under `umask`, resolves once it listens. */
async function start(t: Teardown, kind: Kind, sock: string, extra: string[] = [], umask = '022'): Promise<ChildProcess> {
  const [cmd, args] = plainExec([STRATAFS_BIN, kind, '--socket', sock, ...extra]);
  return (await spawnListening(t, kind, 'sh', ['-c', `umask ${umask} && exec "$@"`, 'sh', cmd, ...args])).child;
}

async function stop(child: ChildProcess): Promise<void> {
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
  await exited;
}

/** A private dir that uid 65534 can enter (the socket's own mode is what is tested). */
async function reachableDir(t: Teardown, prefix: string): Promise<string> {
  const base = await tempDir(t, prefix);
  fs.chmodSync(base, 0o755);
  return base;
}

for (const kind of ['daemon', 'graphdriver'] as const) {
  t.test(`${kind}: started under umask 000, never reachable by another user`, async (t) => {
    const base = await reachableDir(t, `sockrace-${kind}`);
    const sock = path.join(base, 's.sock');
    const spinner = python(t, SPINNER, [sock]);
    for (let i = 0; i < 100 && !spinner.out().includes('ready'); i++) await new Promise((r) => setTimeout(r, 20));
    t.match(spinner.out(), /ready/, 'the spinner runs as uid 65534');
    const ROUNDS = 8;
    for (let i = 0; i < ROUNDS; i++) {
      const child = await start(t, kind, sock, [], '000');
      t.equal(fs.statSync(sock).mode & 0o777, 0o600, `round ${i}: the socket is 0600`);
      await stop(child);
    }
    spinner.child.kill('SIGTERM');
    await spinner.exited;
    const [ok, tries] = spinner.out().replace('ready', '').trim().split(/\s+/).map(Number);
    t.ok(tries > 1000, `the spinner tried ${tries} times`);
    t.equal(ok, 0, `connections by uid 65534 over ${ROUNDS} starts`);
  });

  t.test(`${kind}: a peer that is neither root nor --allow-uid is refused even on a 0666 socket`, async (t) => {
    const base = await reachableDir(t, `sockcred-${kind}`);
    const sock = path.join(base, 's.sock');
    const line = kind === 'daemon' ? '{"op":"list"}\n' : 'POST /Plugin.Activate HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n';
    const expect = kind === 'daemon' ? /"ok": ?true/ : /GraphDriver/;
    const ask = async (): Promise<string> => {
      const p = python(t, ASK, [sock, line]);
      await p.exited;
      return p.out();
    };
    const plain = await start(t, kind, sock);
    fs.chmodSync(sock, 0o666);
    const refused = await ask();
    t.notMatch(refused, expect, 'uid 65534 got no answer');
    t.match(refused, /^(b''|b'\[\w+\]')$/m, `the connection was closed (${refused.trim()})`);
    await stop(plain);

    const allowing = await start(t, kind, sock, ['--allow-uid', String(NOBODY)]);
    fs.chmodSync(sock, 0o666);
    t.match(await ask(), expect, 'with --allow-uid 65534 the same request is answered');
    await stop(allowing);
  });

  t.test(`${kind}: connection count and idle limits`, async (t) => {
    const base = await tempDir(t, `socklimit-${kind}`);
    const sock = path.join(base, 's.sock');
    await start(t, kind, sock, ['--max-connections', '8', '--idle-timeout', '1']);
    const conns: { closedAt?: number }[] = [];
    const opened = Date.now();
    const sockets: net.Socket[] = [];
    for (let i = 0; i < 20; i++) {
      const c = net.connect(sock);
      const rec: { closedAt?: number } = {};
      c.on('error', () => undefined);
      c.on('close', () => (rec.closedAt = Date.now() - opened));
      conns.push(rec);
      sockets.push(c);
    }
    t.teardown(() => sockets.forEach((s) => s.destroy()));
    await new Promise((r) => setTimeout(r, 600));
    const early = conns.filter((c) => c.closedAt !== undefined).length;
    t.ok(early >= 12, `${early} of 20 idle connections closed at once (at most 8 kept)`);
    for (let i = 0; i < 100 && conns.some((c) => c.closedAt === undefined); i++) await new Promise((r) => setTimeout(r, 50));
    t.equal(conns.filter((c) => c.closedAt === undefined).length, 0, 'every idle connection closed after the idle timeout');
  });
}

t.test('graphdriver: oversized JSON bodies refused, a request trickled in byte by byte cut off', async (t) => {
  const base = await tempDir(t, 'socklimit-http');
  const sock = path.join(base, 's.sock');
  await start(t, 'graphdriver', sock, ['--max-request-bytes', '1024', '--idle-timeout', '1']);
  const big = await new Promise<string>((resolve, reject) => {
    const c = net.connect(sock, () => c.write(`POST /GraphDriver.Status HTTP/1.1\r\nHost: x\r\nContent-Length: 4000\r\nConnection: close\r\n\r\n${'{'.repeat(4000)}`));
    let got = '';
    c.on('data', (d) => (got += d));
    c.on('end', () => resolve(got));
    c.on('error', reject);
  });
  t.match(big, /^HTTP\/1\.1 400[^]*larger than 1024 bytes/, 'a 4000-byte body over a 1024-byte limit: 400');
  // one header byte every 200 ms: each byte is activity, but the request never completes
  const started = Date.now();
  const closedAfter = await new Promise<number>((resolve) => {
    const c = net.connect(sock);
    const line = 'POST /Plugin.Activate HTTP/1.1\r\nHost: x\r\nX-Slow: ' + 'a'.repeat(100);
    let i = 0;
    const timer = setInterval(() => {
      if (!c.destroyed) c.write(line[i++ % line.length]);
    }, 200);
    c.on('error', () => undefined);
    c.on('close', () => {
      clearInterval(timer);
      resolve(Date.now() - started);
    });
    t.teardown(() => {
      clearInterval(timer);
      c.destroy();
    });
  });
  t.ok(closedAfter < 5000, `the trickling connection was closed after ${closedAfter} ms (idle timeout 1 s)`);
});

/** The resident memory of a process, KiB. */
const rssKiB = (pid: number): number => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);

t.test('daemon: many half-sent requests do not grow memory without bound', async (t) => {
  const base = await tempDir(t, 'sockmem');
  const sock = path.join(base, 's.sock');
  const daemon = await start(t, 'daemon', sock);
  const pid = daemon.pid!;
  const before = rssKiB(pid);
  const chunk = Buffer.alloc(64 * 1024, 0x61);
  const sockets: net.Socket[] = [];
  t.teardown(() => sockets.forEach((s) => s.destroy()));
  let refused = 0;
  await Promise.all(Array.from({ length: 300 }, () => new Promise<void>((resolve) => {
    const c = net.connect(sock);
    sockets.push(c);
    let sent = 0;
    const more = (): void => {
      // 1 MiB without a newline, as fast as the daemon takes it
      while (sent < 16 && !c.destroyed) {
        sent++;
        if (!c.write(chunk)) {
          c.once('drain', more);
          return;
        }
      }
      resolve();
    };
    c.on('connect', more);
    c.on('data', () => refused++);
    c.on('error', () => resolve());
    c.on('close', () => resolve());
  })));
  await new Promise((r) => setTimeout(r, 500));
  const grown = (rssKiB(pid) - before) / 1024;
  t.ok(grown < 150, `RSS grew by ${grown.toFixed(0)} MiB for 300 half-sent 1 MiB requests`);
  t.ok(refused > 0, 'oversized requests were answered with an error');
});
