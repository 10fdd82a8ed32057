/**
 * `stratafs daemon --socket PATH` and `stratafs -o server=PATH,...`: several mounts
 * served by one daemon process, listed and unmounted through the socket or with umount,
 * bad requests answered with an error, a missing daemon reported clearly, and SIGTERM
 * unmounting everything. A mount request with server= goes through the C client
 * (stratafs-client, no Node.js start): relative paths against the caller's cwd, one-line
 * errors with the launcher's exit statuses, argv bytes that are not UTF-8; and through
 * the Node.js path when the client binary is missing.
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { tempDir, type Teardown } from '../lib/tmp';
import { plainExec, run, runOk } from '../lib/proc';
import { mountTable, REPO_ROOT, STRATAFS_BIN } from '../lib/mounts';

const CLIENT = path.join(REPO_ROOT, 'native-bindings', 'build', 'Release', 'stratafs-client');

const stratafs = (args: string[]): ReturnType<typeof run> => {
  const [cmd, a] = plainExec([STRATAFS_BIN, ...args]);
  return run(cmd, a, { timeoutMs: 30_000 });
};

function rawRequest(sock: string, line: string): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const c = net.connect(sock, () => c.write(line));
    let buf = '';
    c.on('data', (d) => (buf += d));
    c.on('end', () => resolve(JSON.parse(buf) as Record<string, unknown>));
    c.on('error', reject);
  });
}

/** `stratafs daemon --socket SOCK` in a child process, stopped (by its PID) in teardown. */
async function startDaemon(t: Teardown, sock: string): Promise<{ pid: number; stop(): Promise<number | null> }> {
  const [cmd, args] = plainExec([STRATAFS_BIN, 'daemon', '--socket', sock]);
  const daemon = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  daemon.stderr!.on('data', (d) => (err += d));
  const exited = new Promise<number | null>((r) => daemon.once('exit', (code) => r(code)));
  const stop = async (): Promise<number | null> => {
    if (daemon.exitCode === null && daemon.signalCode === null) daemon.kill('SIGTERM');
    return exited;
  };
  t.teardown(stop);
  for (let i = 0; i < 200 && !err.includes('listening'); i++) await new Promise((r) => setTimeout(r, 50));
  if (!err.includes('listening')) throw new Error(`the daemon did not start: ${err}`);
  return { pid: daemon.pid!, stop };
}

const rssKiB = (pid: number): number => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);

t.test('one daemon serves the mounts asked for over its socket', async (t) => {
  const base = await tempDir(t, 'gdsocket');
  const sock = path.join(base, 'd.sock');
  const [cmd, args] = plainExec([STRATAFS_BIN, 'daemon', '--socket', sock]);
  const daemon = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  daemon.stderr!.on('data', (d) => (err += d));
  t.teardown(async () => {
    if (daemon.exitCode === null && daemon.signalCode === null) {
      daemon.kill('SIGTERM');
      await new Promise((r) => daemon.once('exit', r));
    }
  });
  for (let i = 0; i < 200 && !err.includes('listening'); i++) await new Promise((r) => setTimeout(r, 50));
  t.match(err, /listening/, 'daemon started');

  const lower = path.join(base, 'lower');
  fs.mkdirSync(lower);
  fs.writeFileSync(path.join(lower, 'f'), 'lower\n');
  const rss0 = rssKiB(daemon.pid!);
  const mnts: string[] = [];
  for (let i = 0; i < 6; i++) {
    const d = path.join(base, `m${i}`);
    for (const s of ['upper', 'work', 'mnt']) fs.mkdirSync(path.join(d, s), { recursive: true });
    const r = await stratafs(['-o', `server=${sock},lowerdir=${lower},upperdir=${d}/upper,workdir=${d}/work`, `${d}/mnt`]);
    t.equal(r.code, 0, `mount ${i} through the daemon ${r.stderr}`);
    mnts.push(`${d}/mnt`);
  }
  t.comment(`daemon RSS ${rss0} KiB with no mount, ${rssKiB(daemon.pid!)} KiB with ${mnts.length}`);
  const table = await mountTable();
  t.ok(mnts.every((m) => table.get(m) === 'fuse.stratafs'), 'all mounted');
  t.equal(await runOk('cat', [`${mnts[0]}/f`]), 'lower\n', 'reads through a daemon mount');
  await runOk('/bin/sh', ['-c', `echo up > ${mnts[1]}/f`]);
  t.equal(fs.readFileSync(path.join(base, 'm1', 'upper', 'f'), 'utf8'), 'up\n', 'writes go to its upper');
  t.equal((await run('pgrep', ['-f', `bin/stratafs(\\.js)? -o server=${sock}`])).stdout.trim(), '', 'no process per mount stays');

  const listed = (await stratafs(['daemon', '--socket', sock, '--list'])).stdout.trim().split('\n').sort();
  t.same(listed, [...mnts].sort(), '--list names every mount');
  await runOk('umount', [mnts[0]]);
  t.equal((await stratafs(['daemon', '--socket', sock, '--unmount', mnts[1]])).code, 0, '--unmount');
  const after = await mountTable();
  t.notOk(after.has(mnts[0]) || after.has(mnts[1]), 'both gone');
  for (let i = 0; i < 100; i++) {
    if ((await stratafs(['daemon', '--socket', sock, '--list'])).stdout.trim().split('\n').length === mnts.length - 2) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  t.equal((await stratafs(['daemon', '--socket', sock, '--list'])).stdout.trim().split('\n').length, mnts.length - 2, 'the daemon forgot them');

  t.match(await rawRequest(sock, '{"op":\n'), { ok: false, error: /malformed JSON/ }, 'malformed request');
  t.match(await rawRequest(sock, '{"op":"mount","spec":{"lowerdirs":["rel"],"mountpoint":"/x"}}\n'), { ok: false, error: /absolute/ });
  const dup = await stratafs(['-o', `server=${sock},lowerdir=${lower}`, mnts[2]]);
  t.equal(dup.code, 1);
  t.match(dup.stderr, /already served/, 'a second mount on a served target is refused');

  daemon.kill('SIGTERM');
  t.equal(await new Promise((r) => daemon.once('exit', r)), 0, 'clean exit on SIGTERM');
  const end = await mountTable();
  t.notOk(mnts.some((m) => end.has(m)), 'SIGTERM unmounted everything');
  t.notOk(fs.existsSync(sock), 'socket removed');
  const gone = await stratafs(['-o', `server=${sock},lowerdir=${lower}`, mnts[2]]);
  t.equal(gone.code, 1);
  t.match(gone.stderr, /no stratafs daemon listens on/, 'a missing daemon is one clear error');
});

t.test('the C client mounts through the daemon without starting Node.js', async (t) => {
  t.ok(fs.existsSync(CLIENT), `the client is built (${CLIENT})`);
  const base = await tempDir(t, 'fmclient');
  const sock = path.join(base, 'd.sock');
  const daemon = await startDaemon(t, sock);
  // a store laid out as containers-storage does: l/ID symlinks to ../ID/diff, cwd = home
  const home = path.join(base, 'home');
  for (const [id, file] of [['A', 'top'], ['B', 'base']]) {
    fs.mkdirSync(path.join(home, id, 'diff'), { recursive: true });
    fs.writeFileSync(path.join(home, id, 'diff', file), `${file}\n`);
    fs.mkdirSync(path.join(home, 'l'), { recursive: true });
    fs.symlinkSync(`../${id}/diff`, path.join(home, 'l', id));
  }
  // no node to start: a launcher that tried would fail ("cannot start the daemon")
  const env: NodeJS.ProcessEnv = { ...process.env, STRATAFS_NODE: path.join(base, 'no-node') };
  delete env.NODE_OPTIONS;
  const mount = (opts: string, mnt: string, e: NodeJS.ProcessEnv = env): ReturnType<typeof run> =>
    run(STRATAFS_BIN, ['-o', opts, mnt], { cwd: home, env: e, timeoutMs: 30_000 });

  const mnts: string[] = [];
  for (let i = 0; i < 8; i++) {
    for (const d of [`C${i}/diff`, `C${i}/work`, `C${i}/merged`]) fs.mkdirSync(path.join(home, d), { recursive: true });
    const r = await mount(`lowerdir=l/A:l/B,upperdir=C${i}/diff,workdir=C${i}/work,,server=${sock}`, `C${i}/merged`);
    t.equal(r.code, 0, `mount ${i} through the client ${r.stderr}`);
    t.equal(r.stderr, '', 'says nothing');
    mnts.push(path.join(home, `C${i}`, 'merged'));
  }
  const table = await mountTable();
  t.ok(mnts.every((m) => table.get(m) === 'fuse.stratafs'), 'all mounted, relative paths resolved against the cwd');
  t.equal(await runOk('cat', [`${mnts[0]}/top`, `${mnts[7]}/base`]), 'top\nbase\n', 'both lowers in place');
  await runOk('/bin/sh', ['-c', `echo up > ${mnts[3]}/top`]);
  t.equal(fs.readFileSync(path.join(home, 'C3', 'diff', 'top'), 'utf8'), 'up\n', 'writes go to its upper');
  const listed = (await stratafs(['daemon', '--socket', sock, '--list'])).stdout.trim().split('\n').sort();
  t.same(listed, [...mnts].sort(), 'one daemon process serves them all');
  // this checkout's client only: other checkouts may run their tests at the same time
  t.equal((await run('pgrep', ['-f', CLIENT])).stdout.trim(), '', 'no client stays');

  const oneLine = (r: { stderr: string }, re: RegExp, what: string): void => {
    t.match(r.stderr, re, what);
    t.equal(r.stderr.split('\n').length, 2, `${what}: one line (${JSON.stringify(r.stderr)})`);
  };
  fs.mkdirSync(path.join(home, 'M'));
  const badOpt = await mount(`lowerdir=l/A,bogus,server=${sock}`, 'M');
  t.equal(badOpt.code, 2, 'a bad option exits 2');
  oneLine(badOpt, /^stratafs: unknown option "bogus"\n$/, 'the bad option is named');
  const foreground = await run(CLIENT, ['-f', '-o', `lowerdir=l/A,server=${sock}`, 'M'], { cwd: home, env, timeoutMs: 30_000 });
  t.equal(foreground.code, 2, '-f through the daemon is refused');
  oneLine(foreground, /^stratafs: -f and -d/, '-f refused');
  const busy = await mount(`lowerdir=l/A,server=${sock}`, 'C0/merged');
  t.equal(busy.code, 1, 'a failed mount exits 1');
  oneLine(busy, /already served/, 'a served target');
  const noLower = await mount(`lowerdir=l/Z,server=${sock}`, 'M');
  t.equal(noLower.code, 1, 'a missing lower exits 1');
  oneLine(noLower, /l\/Z|home\/l\/Z/, 'the missing lower is named');
  const latin = await run('/bin/sh', ['-c', `exec "$0" -o "lowerdir=$(printf 'l/\\377'),server=$1" M`, STRATAFS_BIN, sock], { cwd: home, env, timeoutMs: 30_000 });
  t.equal(latin.code, 2, 'an argument that is not UTF-8 exits 2');
  oneLine(latin, /not valid UTF-8: "lowerdir=l\/\\xff,/, 'its bytes arrive exactly');
  // paths inside the daemon's own mounts would hang it (it must never access them)
  fs.symlinkSync('../C0/merged', path.join(home, 'l', 'OWN'));
  for (const [what, opts, mnt] of [
    ['a lower that is a served mount', `lowerdir=C0/merged`, 'M'],
    ['a lower inside one through a symlink', `lowerdir=l/A:l/OWN/sub`, 'M'],
    ['an upper inside one', `lowerdir=l/A,upperdir=C1/merged/u,workdir=C1/merged/w`, 'M'],
    ['a mountpoint inside one', `lowerdir=l/A`, 'C2/merged/tmp'],
  ]) {
    const own = await mount(`${opts},server=${sock}`, mnt);
    t.equal(own.code, 1, `${what}: refused`);
    oneLine(own, /lies inside \S+\/C[0-2]\/merged, a mount this stratafs process serves/, what);
  }
  const viaEnv = await mount('lowerdir=l/A', 'M', { ...env, STRATAFS_SERVER: sock });
  t.equal(viaEnv.code, 0, `STRATAFS_SERVER instead of server= ${viaEnv.stderr}`);
  await runOk('umount', [path.join(home, 'M')]);
  t.notOk((await mountTable()).has(path.join(home, 'M')), 'unmounted with umount');
  t.match(await rawRequest(sock, '{"op":"mount-argv","argv":["--help"],"cwd":"/"}\n'), { ok: false, usage: true }, '--help is not a mount');
  t.match(await rawRequest(sock, '{"op":"mount-argv","argv":["-o","lowerdir=/x","/m"],"cwd":"\u0100"}\n'), { ok: false, error: /U\+00FF/ }, 'one byte per character');

  // the launcher without the client binary asks the daemon through Node.js
  const bin = path.join(base, 'bin');
  fs.mkdirSync(bin);
  fs.copyFileSync(STRATAFS_BIN, path.join(bin, 'stratafs'));
  fs.chmodSync(path.join(bin, 'stratafs'), 0o755);
  fs.symlinkSync(path.join(path.dirname(STRATAFS_BIN), 'stratafs.js'), path.join(bin, 'stratafs.js'));
  const plain: NodeJS.ProcessEnv = { ...process.env, STRATAFS_SERVER: sock };
  delete plain.NODE_OPTIONS;
  const fallback = await run(path.join(bin, 'stratafs'), ['-o', 'lowerdir=l/A', 'M'], { cwd: home, env: plain, timeoutMs: 30_000 });
  t.equal(fallback.code, 0, `Node.js fallback mounts through the daemon ${fallback.stderr}`);
  t.ok((await stratafs(['daemon', '--socket', sock, '--list'])).stdout.includes(path.join(home, 'M')), 'served by the daemon');
  await runOk('umount', [path.join(home, 'M')]);

  // one verdict protocol (src/mount/verdict.ts): the C client and the Node.js path give
  // every request the same exit status and the same line
  const nodePath = (args: string[]): ReturnType<typeof run> =>
    run(path.join(bin, 'stratafs'), args, { cwd: home, env: { ...plain, STRATAFS_SERVER: '' }, timeoutMs: 30_000 });
  const viaClient = (args: string[]): ReturnType<typeof run> => run(CLIENT, args, { cwd: home, env, timeoutMs: 30_000 });
  for (const [what, args, code] of [
    ['a bad option', ['-o', `lowerdir=l/A,bogus,server=${sock}`, 'M'], 2],
    ['an unknown flag', ['--bogus', '-o', `lowerdir=l/A,server=${sock}`, 'M'], 2],
    ['a served target', ['-o', `lowerdir=l/A,server=${sock}`, 'C0/merged'], 1],
    ['a missing lower', ['-o', `lowerdir=l/Z,server=${sock}`, 'M'], 1],
    ['no daemon there', ['-o', `lowerdir=l/A,server=${base}/none.sock`, 'M'], 1],
    ['a mount in the foreground', ['-f', '-o', `lowerdir=l/A,server=${sock}`, 'M'], 2],
  ] as const) {
    const c = await viaClient([...args]);
    const n = await nodePath([...args]);
    t.equal(c.code, code, `${what}: the client exits ${code} (${c.stderr.trim()})`);
    t.same([n.code, n.stderr], [c.code, c.stderr], `${what}: the Node.js path says the same`);
  }
  // server= names the daemon even where STRATAFS_SERVER names another (as an option should)
  const elsewhere = `${base}/other.sock`;
  const cPref = await run(CLIENT, ['-o', `lowerdir=l/Z,server=${sock}`, 'M'], { cwd: home, env: { ...env, STRATAFS_SERVER: elsewhere }, timeoutMs: 30_000 });
  const nPref = await run(path.join(bin, 'stratafs'), ['-o', `lowerdir=l/Z,server=${sock}`, 'M'], { cwd: home, env: { ...plain, STRATAFS_SERVER: elsewhere }, timeoutMs: 30_000 });
  t.match(cPref.stderr, /l\/Z/, 'the client asked the daemon named by server=');
  t.same([nPref.code, nPref.stderr], [cPref.code, cPref.stderr], 'so does the Node.js path');
  const ok = await nodePath(['-o', `lowerdir=l/A,server=${sock}`, 'M']);
  t.same([ok.code, ok.stderr], [0, ''], 'mounted through the Node.js path: exit 0, nothing said');

  t.equal(await daemon.stop(), 0, 'the daemon stops on SIGTERM');
  const end = await mountTable();
  t.notOk([...mnts, path.join(home, 'M')].some((m) => end.has(m)), 'and unmounts everything');
  const gone = await mount(`lowerdir=l/A,server=${sock}`, 'M');
  t.equal(gone.code, 1, 'no daemon: exit 1');
  oneLine(gone, new RegExp(`^stratafs: no stratafs daemon listens on ${sock} \\(start one with: stratafs daemon --socket ${sock}\\)\\n$`), 'no daemon');
});
