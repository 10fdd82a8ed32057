/**
 * An fd storm against one `stratafs daemon` serving two mounts: an unprivileged process
 * (uid 65534, its own fd limit raised with prlimit) opens one lower file 20,000 times
 * through the first mount and holds the fds; then it opens 12,000 different files and
 * holds those. During each storm the other users of the first mount and the second
 * mount must keep serving (reads and a create); afterwards both serve and the daemon is
 * alive, also after its idle-memory timer ran while the fds were held
 * (STRATAFS_IDLE_MEMORY_MS shortens its interval to 200 ms).
 *
 * The daemon runs with an fd limit of 8,192 (prlimit), so that the storm is larger than
 * its fd table whatever the machine's hard limit. The storm's own limit is raised with
 * prlimit to fit its 20,000 opens where the test may (CAP_SYS_RESOURCE); where it may
 * not, the storm opens as many as its hard limit allows (still more than the daemon's).
 */
import t from 'tap';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { tempDir, type Teardown } from '../lib/tmp';
import { plainExec, run, spawnListening } from '../lib/proc';
import { STRATAFS_BIN } from '../lib/mounts';
import { py } from './lib';

const STORM_OPENS = 20_000;
const DISTINCT = 12_000;
const IDLE_MS = 200;
const DAEMON_NOFILE = 8192;

/** N opens of one file or of DIR/0..N-1; stops at the first error, then holds the fds */
const STORM = `
import errno, json, os, sys
what = json.loads(sys.argv[2])
import resource
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
n = min(int(sys.argv[1]), hard - 16)
fds, err = [], None
for i in range(n):
    try:
        fds.append(os.open(what['file'] if 'file' in what else f"{what['dir']}/{i}", os.O_RDONLY))
    except OSError as e:
        err = errno.errorcode[e.errno]
        break
print(json.dumps({'opened': len(fds), 'error': err}), flush=True)
sys.stdin.read()
`;

interface Storm {
  opened: number;
  error: string | null;
  end(): Promise<void>;
}

/** the storm as uid 65534 in its own process; resolves once it holds its fds */
async function storm(t: Teardown, n: number, what: { file: string } | { dir: string }): Promise<Storm> {
  const nofile = `--nofile=${n + 1000}:${n + 1000}`;
  const raise = (await run('prlimit', [nofile, '--', 'true'])).code === 0 ? ['prlimit', nofile, '--'] : [];
  const argv = [
    ...raise, 'setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', '/usr/bin/python3', '-c', STORM, String(n), JSON.stringify(what),
  ];
  const child: ChildProcessWithoutNullStreams = spawn(argv[0] as string, argv.slice(1));
  const exited = new Promise<void>((done) => child.once('close', () => done()));
  const end = async (): Promise<void> => {
    child.stdin.end();
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    await exited;
    clearTimeout(timer);
  };
  t.teardown(end);
  let out = '';
  let err = '';
  child.stderr.on('data', (d) => (err += d));
  await new Promise<void>((done) => {
    child.stdout.on('data', (d) => {
      out += d;
      if (out.includes('\n')) done();
    });
    void exited.then(() => done());
  });
  if (!out.includes('\n')) throw new Error(`the storm did not start: ${err}`);
  const r = JSON.parse(out) as { opened: number; error: string | null };
  return { ...r, end };
}

/** `stratafs daemon --socket SOCK` with a short idle-memory interval, stopped by PID in teardown */
async function startDaemon(t: Teardown, sock: string): Promise<{ pid: number; alive(): boolean; stderr(): string }> {
  const [cmd, args] = plainExec([STRATAFS_BIN, 'daemon', '--socket', sock]);
  const limit = `--nofile=${DAEMON_NOFILE}:${DAEMON_NOFILE}`;
  const d = await spawnListening(t, 'the daemon', 'prlimit', [limit, '--', cmd, ...args], { env: { ...process.env, STRATAFS_IDLE_MEMORY_MS: String(IDLE_MS) } });
  return { pid: d.child.pid!, alive: d.alive, stderr: d.stderr };
}

/** a read of the lower file and a create (written and read back) through `mnt`, as root */
async function serves(mnt: string, name: string): Promise<{ ok: boolean; detail: string }> {
  const r = await py(
    `import sys
m, name = sys.argv[1], sys.argv[2]
assert open(m + '/f').read() == 'lower\\n'
with open(m + '/' + name, 'w') as f:
    f.write(name)
assert open(m + '/' + name).read() == name
print('ok')`,
    [mnt, name],
    30_000,
  );
  return { ok: r.status === 0 && r.stdout.trim() === 'ok', detail: r.stderr.trim().split('\n').pop() ?? '' };
}

const fdCount = (pid: number): number => fs.readdirSync(`/proc/${pid}/fd`).length;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

t.test('an fd storm on one mount of a daemon: everyone else keeps being served, the daemon lives', async (t) => {
  const base = await tempDir(t, 'fdstorm');
  fs.chmodSync(base, 0o755);
  const lower = path.join(base, 'lower');
  fs.mkdirSync(path.join(lower, 'many'), { recursive: true });
  fs.writeFileSync(path.join(lower, 'f'), 'lower\n');
  for (let i = 0; i < DISTINCT; i++) fs.writeFileSync(path.join(lower, 'many', String(i)), '');
  const sock = path.join(base, 'd.sock');
  const daemon = await startDaemon(t, sock);
  const mnts: string[] = [];
  for (const m of ['a', 'b']) {
    for (const d of ['upper', 'work', 'mnt']) fs.mkdirSync(path.join(base, m, d), { recursive: true });
    const mnt = path.join(base, m, 'mnt');
    const [cmd, args] = plainExec([STRATAFS_BIN, '-o', `server=${sock},lowerdir=${lower},upperdir=${base}/${m}/upper,workdir=${base}/${m}/work`, mnt]);
    const r = await run(cmd, args, { timeoutMs: 30_000 });
    t.equal(r.code, 0, `mount ${m} through the daemon ${r.stderr}`);
    t.teardown(() => run('umount', ['-l', mnt]));
    mnts.push(mnt);
  }
  const [a, b] = mnts as [string, string];
  const fds0 = fdCount(daemon.pid);

  // one file, 20,000 times
  const s1 = await storm(t, STORM_OPENS, { file: `${a}/f` });
  t.comment(`storm 1: ${JSON.stringify({ opened: s1.opened, error: s1.error })}, daemon fds ${fds0} -> ${fdCount(daemon.pid)}`);
  t.ok(s1.opened > DAEMON_NOFILE, `the storm holds ${s1.opened} opens, more than the daemon's fd limit (${s1.error ?? 'no error'})`);
  t.equal(s1.error, null, 'none refused');
  for (const [mnt, what] of [[b, 'the second mount'], [a, 'the storm\'s mount, for others']] as const) {
    const r = await serves(mnt, 'during-1');
    t.ok(r.ok, `${what} serves during the storm ${r.detail}`);
  }
  await sleep(5 * IDLE_MS);
  t.ok(daemon.alive(), 'the daemon is alive after its idle-memory timer ran during the storm');
  await s1.end();

  // 12,000 different files
  const s2 = await storm(t, DISTINCT, { dir: `${a}/many` });
  t.comment(`storm 2: ${JSON.stringify({ opened: s2.opened, error: s2.error })}, daemon fds ${fdCount(daemon.pid)}`);
  t.ok(s2.opened > 1000, `the storm got many files (${s2.opened})`);
  if (s2.opened < DISTINCT) t.equal(s2.error, 'ENFILE', 'and was stopped by its mount\'s budget');
  const during = await serves(b, 'during-2');
  t.ok(during.ok, `the second mount serves while the first is at its budget ${during.detail}`);
  await sleep(5 * IDLE_MS);
  t.ok(daemon.alive(), 'the daemon is alive');
  await s2.end();

  for (const [mnt, what] of [[a, 'the first mount'], [b, 'the second mount']] as const) {
    const r = await serves(mnt, 'after');
    t.ok(r.ok, `${what} serves after the storms ${r.detail}`);
  }
  // A lower file's fd is kept after its last release (a bounded cache: a quarter of the
  // mount's fd allowance, given back first when the budget is short) until the kernel
  // forgets the inode; making it forget them gives every one back.
  t.comment(`daemon fds after the storms ${fdCount(daemon.pid)}, before the kernel forgets the inodes`);
  fs.writeFileSync('/proc/sys/vm/drop_caches', '2');
  let fds = fdCount(daemon.pid);
  for (let i = 0; i < 50 && fds > fds0 + 50; i++) {
    await sleep(100);
    fds = fdCount(daemon.pid);
  }
  t.ok(fds <= fds0 + 50, `the daemon's fds went back (${fds0} before, ${fds} after)`);
  t.ok(daemon.alive(), `the daemon is alive ${daemon.stderr()}`);
});
