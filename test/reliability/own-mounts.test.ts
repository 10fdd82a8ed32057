/**
 * The daemon never waits on itself (issue 9, section 5): a mountpoint inside a lower layer
 * (another mount of the same daemon, or the mount's own mountpoint) must not make the
 * daemon look a name up through its own mount. Kernel overlayfs serves both layouts (it
 * reads layers without crossing mounts); stratafs must serve them too, with the same
 * listing, and keep serving its other mounts.
 *
 * A hang must fail the test, not CI: every look through a mount is a child process with a
 * timeout, the daemons run as separate processes and are killed (by PID) in teardown, and
 * whatever is still mounted below the test directory is detached (umount -l).
 */
import t, { type Test } from 'tap';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { tempDir, type Teardown } from '../lib/tmp';
import { daemonsFor, plainExec, run, type RunResult } from '../lib/proc';
import { mountKernelOverlay, STRATAFS_BIN } from '../lib/mounts';

/** long enough for a loaded machine, short enough to fail a hang quickly */
const LOOK_MS = 15_000;

/**
 * What a look at DIR shows: names, types, modes and file contents, sorted. A look that
 * does not end within LOOK_MS is a hang: the daemon waits on itself, and the look cannot
 * end before it dies, so `kill` (the daemons serving it, by PID) is called then.
 */
function look(dir: string, kill: () => void): Promise<RunResult> {
  const script = `cd "$1" && ls -A . sub && find . -printf '%p %y %m\\n' | LC_ALL=C sort && find . -type f -exec cat {} + | LC_ALL=C sort`;
  return guarded(['-c', script, 'look', dir], kill);
}

/** `sh ARGS`, and `kill` when it has not ended within LOOK_MS (see look). */
function guarded(args: string[], kill: () => void): Promise<RunResult> {
  return new Promise((resolve) => {
    const child = spawn('sh', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
      kill();
    }, LOOK_MS);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, timedOut });
    });
  });
}

function killPids(pids: number[]): void {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone already
    }
  }
}

function seen(t: Test, r: RunResult, what: string): string {
  t.notOk(r.timedOut, `${what}: answered within ${LOOK_MS / 1000} s (not waiting on itself)`);
  t.equal(r.code, 0, `${what}: exit 0 ${r.stderr}`);
  return r.stdout;
}

function write(file: string, text: string): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, text);
}

/** A lower with a file, a deeper dir and `sub/under` (what is below a mountpoint on sub). */
function makeLower(dir: string): void {
  write(path.join(dir, 'f'), 'lower f\n');
  write(path.join(dir, 'd', 'x'), 'lower d/x\n');
  write(path.join(dir, 'sub', 'under'), 'under the mountpoint\n');
}

function dirs(base: string, name: string): { upper: string; work: string; mnt: string } {
  const d = { upper: path.join(base, name, 'upper'), work: path.join(base, name, 'work'), mnt: path.join(base, name, 'mnt') };
  for (const p of Object.values(d)) fs.mkdirSync(p, { recursive: true });
  return d;
}

/** Kills (SIGKILL, by PID) the daemons serving `mnts` that are still there. */
function killDaemons(t: Teardown, mnts: () => string[]): void {
  t.teardown(() => killPids(mnts().flatMap(daemonsFor)));
}

t.test('one daemon: mount B inside the lower of mount A, and C elsewhere', async (t) => {
  const base = await tempDir(t, 'ownmnt');
  const lower = path.join(base, 'L');
  makeLower(lower);
  const sock = path.join(base, 'd.sock');
  const [cmd, args] = plainExec([STRATAFS_BIN, 'daemon', '--socket', sock]);
  const daemon = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  daemon.stderr!.on('data', (d) => (err += d));
  // registered after tempDir: runs first (kill), then tempDir detaches what is left
  t.teardown(() => {
    if (daemon.exitCode === null && daemon.signalCode === null) daemon.kill('SIGKILL');
  });
  for (let i = 0; i < 200 && !err.includes('listening'); i++) await new Promise((r) => setTimeout(r, 50));
  t.match(err, /listening/, 'daemon started');
  const killDaemon = (): void => killPids(daemon.pid === undefined ? [] : [daemon.pid]);
  const mount = (opts: string, mnt: string): Promise<RunResult> => {
    const [c, a] = plainExec([STRATAFS_BIN, '-o', `server=${sock},${opts}`, mnt]);
    return run(c, a, { timeoutMs: 30_000 });
  };

  const A = dirs(base, 'A');
  let r = await mount(`lowerdir=${lower},upperdir=${A.upper},workdir=${A.work}`, A.mnt);
  t.equal(r.code, 0, `mount A ${r.stderr}`);
  const blower = path.join(base, 'BL');
  write(path.join(blower, 'b'), 'in mount B\n');
  r = await mount(`lowerdir=${blower}`, path.join(lower, 'sub'));
  t.equal(r.code, 0, `mount B on ${lower}/sub ${r.stderr}`);
  const got = seen(t, await look(A.mnt, killDaemon), 'ls and find of A');

  const C = dirs(base, 'C');
  r = await mount(`lowerdir=${blower},upperdir=${C.upper},workdir=${C.work}`, C.mnt);
  t.equal(r.code, 0, `mount C elsewhere ${r.stderr}`);
  const c = await guarded(['-c', 'cat "$1"', 'cat', path.join(C.mnt, 'b')], killDaemon);
  t.equal(c.stdout, 'in mount B\n', 'C serves');
  const b = await guarded(['-c', 'cat "$1"', 'cat', path.join(lower, 'sub', 'b')], killDaemon);
  t.equal(b.stdout, 'in mount B\n', 'B serves');
  r = await guarded(['-c', 'echo new > "$1/sub/under2" && cat "$1/sub/under"', 'w', A.mnt], killDaemon);
  t.equal(r.stdout, 'under the mountpoint\n', 'A reads and writes below the mountpoint of B');
  t.equal(fs.readFileSync(path.join(A.upper, 'sub', 'under2'), 'utf8'), 'new\n', 'the write went to A\'s upper');

  // the oracle: kernel overlayfs over the same lower, with B still mounted on L/sub
  const K = dirs(base, 'K');
  const k = await mountKernelOverlay({ lowers: [lower], upper: K.upper, work: K.work, mnt: K.mnt });
  t.teardown(k.unmount);
  await guarded(['-c', 'echo new > "$1/sub/under2"', 'w', K.mnt], () => undefined);
  const want = seen(t, await look(K.mnt, () => undefined), 'kernel overlayfs');
  const now = seen(t, await look(A.mnt, killDaemon), 'ls and find of A after the write');
  t.equal(now, want, 'A lists what kernel overlayfs lists over the same layout');
  t.match(got, /under the mountpoint/, 'A sees the lower\'s sub, not mount B');
  t.notMatch(got, /in mount B/, 'nothing of mount B through A');
});

t.test('one mount whose mountpoint is a directory of its own lower', async (t) => {
  const base = await tempDir(t, 'ownlower');
  const lower = path.join(base, 'L');
  makeLower(lower);
  const mnt = path.join(lower, 'sub');

  const K = dirs(base, 'K');
  const k = await mountKernelOverlay({ lowers: [lower], upper: K.upper, work: K.work, mnt });
  t.teardown(k.unmount);
  const want = seen(t, await look(mnt, () => undefined), 'kernel overlayfs on L/sub');
  await k.unmount();

  const S = dirs(base, 'S');
  killDaemons(t, () => [mnt]);
  // not mountStratafs: it keeps its log next to the mountpoint, here inside the lower
  const [cmd, args] = plainExec([STRATAFS_BIN, '-o', `lowerdir=${lower},upperdir=${S.upper},workdir=${S.work}`, mnt]);
  const r = await run(cmd, args, { timeoutMs: 30_000 });
  t.equal(r.code, 0, `mounted on ${mnt} ${r.stderr}`);
  t.teardown(() => run('umount', [mnt], { timeoutMs: 20_000 }));
  const got = seen(t, await look(mnt, () => killPids(daemonsFor(mnt))), 'ls and find of the mount on L/sub');
  t.equal(got, want, 'the same listing as kernel overlayfs');
  t.match(got, /under the mountpoint/, 'its own mountpoint is the lower\'s directory there');
});
