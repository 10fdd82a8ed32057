/**
 * The stratafs command as container tools use it: detach once mounted (stdio released,
 * exit 0), one clear line and exit != 0 for anything wrong, unmount ends the daemon,
 * a stale mountpoint left by a killed daemon is detected and mounted over.
 * Everything runs in child processes; every mount is undone in teardown.
 */
import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { daemonsFor, waitFor } from '../lib/proc';

const BIN = path.resolve(__dirname, '..', '..', 'bin', 'stratafs');
const DETACH_JS = path.resolve(__dirname, '..', '..', 'dist', 'src', 'cli', 'detach.js');

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the CLI and resolves when the process has exited AND its stdio pipes are closed. */
function run(args: string[], timeoutMs = 20000): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`stratafs ${args.join(' ')}: stdio still open after ${timeoutMs} ms (stderr so far: ${stderr})`));
    }, timeoutMs);
    // 'close' fires only once stdout and stderr reached EOF: a daemon that kept them open would hang here
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

function isMounted(mnt: string): boolean {
  return fs.readFileSync('/proc/mounts', 'utf8').split('\n').some((l) => l.split(' ')[1] === mnt);
}

function mountType(mnt: string): string | undefined {
  const line = fs.readFileSync('/proc/mounts', 'utf8').split('\n').find((l) => l.split(' ')[1] === mnt);
  return line?.split(' ')[2];
}

function forceUnmount(mnt: string): void {
  for (let i = 0; i < 3 && isMounted(mnt); i++) {
    spawnSync('fusermount3', ['-u', '-z', mnt]);
    if (isMounted(mnt)) spawnSync('umount', ['-l', mnt]);
  }
}

function layers(t: tap.Test) {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'stratafs-cli-'));
  const dirs = { root, lower: path.join(root, 'lower'), upper: path.join(root, 'upper'), work: path.join(root, 'work'), mnt: path.join(root, 'mnt') };
  for (const d of [dirs.lower, dirs.upper, dirs.work, dirs.mnt]) fs.mkdirSync(d);
  fs.writeFileSync(path.join(dirs.lower, 'hello'), 'from the lower layer\n');
  t.teardown(() => {
    forceUnmount(dirs.mnt);
    for (const pid of daemonsFor(dirs.mnt)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    fs.rmSync(root, { recursive: true, force: true });
  });
  return { ...dirs, opts: `lowerdir=${dirs.lower},upperdir=${dirs.upper},workdir=${dirs.work}` };
}

t.test('--version and --help', async (t) => {
  const v = await run(['--version']);
  t.equal(v.code, 0);
  t.match(v.stdout, /^stratafs version \d+\.\d+\.\d+/);
  const h = await run(['--help']);
  t.equal(h.code, 0);
  t.match(h.stdout, /lowerdir=/);
});

t.test('misuse: one line, exit != 0, nothing mounted or written', async (t) => {
  const l = layers(t);
  // exit 2: the command line is wrong; exit 1: the mount failed
  const cases: [string[], RegExp, number][] = [
    [[], /no mountpoint given/, 2],
    [[l.mnt], /lowerdir= is required/, 2],
    [['-o', `lowerdir=${l.lower},bogus`, l.mnt], /unknown option "bogus"/, 2],
    [['-o', `lowerdir=${l.lower},upperdir=${l.upper}`, l.mnt], /needs workdir/, 2],
    [['-o', `lowerdir=${l.lower}`, 'stratafs', l.mnt, `${l.root}/second`], /one mountpoint expected/, 2],
    [['-o', `lowerdir=${l.root}/missing`, l.mnt], /missing/, 1],
    [['-o', `lowerdir=${l.lower}/hello`, l.mnt], /not a directory/, 1],
    [['-o', `lowerdir=${l.lower}`, `${l.root}/nomnt`], /does not exist/, 1],
  ];
  for (const [args, pattern, code] of cases) {
    const r = await run(args);
    t.equal(r.code, code, `exit ${code} for ${args.join(' ')}`);
    t.match(r.stderr, pattern, `names the problem: ${r.stderr.trim()}`);
    t.equal(r.stderr.trim().split('\n').length, 1, 'one line');
    t.notOk(isMounted(l.mnt), 'nothing mounted');
  }
  t.same(fs.readdirSync(l.upper), [], 'upper untouched');
});

t.test('detached mount: exit 0 once ready, stdio released, unmount ends the daemon', async (t) => {
  const l = layers(t);
  const r = await run(['-o', l.opts, l.mnt]);
  t.equal(r.code, 0, `mount exits 0 (stderr: ${r.stderr})`);
  t.equal(r.stderr, '', 'nothing printed');
  t.ok(isMounted(l.mnt), 'mounted when the command returns');
  t.equal(mountType(l.mnt), 'fuse.stratafs');
  const cat = spawnSync('cat', [path.join(l.mnt, 'hello')], { encoding: 'utf8' });
  t.equal(cat.stdout, 'from the lower layer\n', 'lower file visible through the mount');
  const pids = daemonsFor(l.mnt);
  t.equal(pids.length, 1, 'one daemon serves the mount');
  const um = spawnSync('fusermount3', ['-u', l.mnt], { encoding: 'utf8' });
  t.equal(um.status, 0, `fusermount3 -u succeeds ${um.stderr}`);
  t.ok(await waitFor(() => daemonsFor(l.mnt).length === 0, 10000), 'daemon exits after fusermount3 -u');
});

t.test('the caller sees EOF on the stderr it passed while the daemon serves on', async (t) => {
  const l = layers(t);
  const child = spawn(BIN, ['-o', l.opts, l.mnt], { stdio: ['ignore', 'ignore', 'pipe'] });
  let exited = false;
  child.on('exit', () => (exited = true));
  const atEof = await new Promise<{ exited: boolean; mounted: boolean; daemons: number }>((resolve) => {
    child.stderr.resume();
    child.stderr.on('end', () => resolve({ exited, mounted: isMounted(l.mnt), daemons: daemonsFor(l.mnt).length }));
  });
  t.ok(atEof.mounted, 'the mount is up when stderr reaches EOF');
  t.equal(atEof.daemons, 1, 'and its daemon runs on: it does not hold the stderr');
  await new Promise((r) => (exited ? r(undefined) : child.on('exit', r)));
  t.equal(child.exitCode, 0, 'the command exits 0');
});

t.test('the verdict pipe: lines to the caller, closed after ready, not inherited by children', async (t) => {
  // a stand-in daemon: takes the channel, starts a shell that lists its own fds, reports
  // whether the channel's pipe is among them, says ready, then lives on
  const script = `
    const fs = require('node:fs');
    const pipe = fs.readlinkSync('/proc/self/fd/3');
    const channel = require(${JSON.stringify(DETACH_JS)}).daemonChannel();
    const fds = require('node:child_process').execFileSync('sh', ['-c', 'for f in /proc/$$/fd/*; do readlink "$f"; done 2>/dev/null; exit 0'], { encoding: 'utf8' });
    channel.notice(fds.split('\\n').includes(pipe) ? 'inherited' : 'not inherited');
    channel.ready();
    channel.notice('after ready');
    setInterval(() => undefined, 60000);`;
  const child = spawn(process.execPath, ['-e', script], {
    stdio: ['ignore', 'ignore', 'inherit', 'pipe'],
    env: { ...process.env, NODE_OPTIONS: '', STRATAFS_READY_FD: '3' },
  });
  t.teardown(() => {
    child.kill('SIGKILL');
  });
  const channel = child.stdio[3] as NodeJS.ReadableStream;
  let lines = '';
  channel.setEncoding('utf8');
  channel.on('data', (d: string) => (lines += d));
  await new Promise((r) => channel.on('end', r));
  t.same(lines.split('\n'), ['notice not inherited', 'ready', ''], 'a notice, ready, then EOF; nothing after ready');
  t.equal(child.exitCode, null, 'EOF came from the closed channel, the process still runs');
});

t.test('umount(8) ends the daemon too', async (t) => {
  const l = layers(t);
  t.equal((await run(['-o', l.opts, l.mnt])).code, 0);
  t.equal(spawnSync('umount', [l.mnt]).status, 0, 'umount succeeds');
  t.ok(await waitFor(() => daemonsFor(l.mnt).length === 0, 10000), 'daemon exits after umount');
});

t.test('a stale mount left by a killed daemon is reported and mounted over', async (t) => {
  const l = layers(t);
  t.equal((await run(['-o', l.opts, l.mnt])).code, 0);
  const [pid] = daemonsFor(l.mnt);
  t.ok(pid, 'daemon found');
  process.kill(pid, 'SIGKILL');
  t.ok(await waitFor(() => daemonsFor(l.mnt).length === 0, 10000), 'daemon killed');
  // /proc/PID/cmdline empties before the dying process's fds are closed: wait for the
  // connection itself to be gone
  const stale = (): boolean => /not connected/.test(spawnSync('stat', [l.mnt], { encoding: 'utf8' }).stderr);
  t.ok(await waitFor(stale, 10000), 'the mountpoint is stale (transport endpoint is not connected)');
  const again = await run(['-o', l.opts, l.mnt]);
  t.equal(again.code, 0, 'mounting again over it works');
  t.match(again.stderr, /stale/, 'and says so in one line');
  t.equal(again.stderr.trim().split('\n').length, 1);
  const cat = spawnSync('cat', [path.join(l.mnt, 'hello')], { encoding: 'utf8' });
  t.equal(cat.stdout, 'from the lower layer\n', 'the new mount serves');
});

t.test('SIGTERM to a foreground daemon unmounts and exits', async (t) => {
  const l = layers(t);
  const child = spawn(BIN, ['-f', '-o', l.opts, l.mnt], { stdio: 'ignore' });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  t.ok(await waitFor(() => isMounted(l.mnt), 10000), 'mounted in the foreground');
  child.kill('SIGTERM');
  t.equal(await exited, 0, 'exits 0');
  t.notOk(isMounted(l.mnt), 'unmounted');
});

t.test('an upper directory without xattr support is refused in one line', async (t) => {
  const l = layers(t);
  const ram = path.join(l.root, 'ram');
  fs.mkdirSync(ram);
  t.equal(spawnSync('mount', ['-t', 'ramfs', 'ramfs', ram]).status, 0, 'ramfs mounted');
  t.teardown(() => {
    spawnSync('umount', [ram]);
  });
  fs.mkdirSync(path.join(ram, 'upper'));
  fs.mkdirSync(path.join(ram, 'work'));
  const r = await run(['-o', `lowerdir=${l.lower},upperdir=${ram}/upper,workdir=${ram}/work`, l.mnt]);
  t.not(r.code, 0, 'exit != 0');
  t.match(r.stderr, /xattr/, `names the problem: ${r.stderr.trim()}`);
  t.equal(r.stderr.trim().split('\n').length, 1, 'one line');
  t.notOk(isMounted(l.mnt), 'nothing mounted');
  t.same(fs.readdirSync(path.join(ram, 'upper')), [], 'upper untouched');
  t.same(fs.readdirSync(path.join(ram, 'work')), [], 'workdir untouched');
});
