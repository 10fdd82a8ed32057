// Helpers of the crash tests: a stratafs mount whose daemon gets extra environment
// (STRATAFS_FAULTS), its daemon's pid, waiting for a stale mountpoint, and python3
// children that do the file work (the test process never touches a mount).
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { STRATAFS_BIN } from '../lib/mounts';
import { daemonsFor, plainExec, waitFor } from '../lib/proc';

export { daemonsFor, waitFor };

export interface Layers {
  root: string;
  lower: string;
  upper: string;
  work: string;
  mnt: string;
}

export function isMounted(mnt: string): boolean {
  return fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').some((l) => l.split(' ')[4] === mnt);
}

/** A stale FUSE mount answers ENOTCONN ("Transport endpoint is not connected"). */
export function isStale(mnt: string): boolean {
  return /not connected/.test(spawnSync('stat', [mnt], { encoding: 'utf8' }).stderr);
}

export interface MountResult {
  code: number | null;
  stderr: string;
}

/**
 * `stratafs -o lowerdir=..,upperdir=..,workdir=.. MNT` with `env` added to the daemon's
 * environment; resolves when the command exits (the daemon has detached). Its output
 * goes to a file: a detached daemon may keep writing to it.
 */
export async function mountWith(l: Layers, env: Record<string, string> = {}, extra = ''): Promise<MountResult> {
  const log = `${l.mnt}.log`;
  fs.writeFileSync(log, '');
  const fd = fs.openSync(log, 'a');
  const opts = `lowerdir=${l.lower},upperdir=${l.upper},workdir=${l.work}${extra}`;
  // the test runner's loaders are not for the daemon (plainExec drops them)
  const [cmd, args] = plainExec([STRATAFS_BIN, '-o', opts, l.mnt]);
  const child = spawn(cmd, args, { stdio: ['ignore', fd, fd], env: { ...process.env, ...env } });
  fs.closeSync(fd);
  const code = await new Promise<number | null>((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('exit', (c) => {
      clearTimeout(timer);
      resolve(c);
    });
  });
  return { code, stderr: fs.readFileSync(log, 'utf8') };
}

export function forceUnmount(mnt: string): void {
  for (let i = 0; i < 3 && isMounted(mnt); i++) {
    spawnSync('fusermount3', ['-u', '-z', mnt]);
    if (isMounted(mnt)) spawnSync('umount', ['-l', mnt]);
  }
}

/** Layer dirs under a fresh temp dir; everything is unmounted and removed in teardown. */
export function makeLayers(t: { teardown(fn: () => unknown): void }, prefix: string): Layers {
  const root = fs.mkdtempSync(path.join('/tmp', `stratafs-${prefix}-`));
  fs.chmodSync(root, 0o755);
  const l = { root, lower: `${root}/lower`, upper: `${root}/upper`, work: `${root}/work`, mnt: `${root}/mnt` };
  for (const d of [l.lower, l.upper, l.work, l.mnt]) fs.mkdirSync(d);
  t.teardown(() => {
    forceUnmount(l.mnt);
    for (const pid of daemonsFor(l.mnt)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone already
      }
    }
    forceUnmount(l.mnt);
    // rm(1) walks trees deeper than PATH_MAX, fs.rmSync does not
    if (!isMounted(l.mnt)) spawnSync('rm', ['-rf', '--one-file-system', root]);
  });
  return l;
}

export interface PyResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** python3 -c CODE ARGS..., asynchronously (the daemon may be killed meanwhile). */
export function py(code: string, args: string[], timeoutMs = 60_000): Promise<PyResult> {
  return pyStarted(code, args, timeoutMs).done;
}

/**
 * Like py(), and `ready` resolves once the child printed its first line (so a test can
 * time a kill from the moment the child starts its work, not from the interpreter's start).
 */
export function pyStarted(code: string, args: string[], timeoutMs = 60_000): { ready: Promise<void>; done: Promise<PyResult> } {
  let onReady: () => void = () => undefined;
  const ready = new Promise<void>((r) => (onReady = r));
  const done = new Promise<PyResult>((resolve) => {
    const child = spawn('python3', ['-c', code, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => {
      stdout += d;
      if (stdout.includes('\n')) onReady();
    });
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (status) => {
      clearTimeout(timer);
      onReady();
      resolve({ status, stdout, stderr });
    });
  });
  return { ready, done };
}

/** Entries of a directory on the host (never a mount), sorted. */
export function list(dir: string): string[] {
  return fs.readdirSync(dir).sort();
}

/**
 * What an operation left in a work dir, leaving out the shared whiteout (a 0/0 character
 * device that whiteouts are hard-linked to, kept there as kernel overlayfs keeps its own).
 */
export function leftovers(dir: string): string[] {
  return list(dir).filter((name) => {
    const st = fs.lstatSync(`${dir}/${name}`);
    return !(st.isCharacterDevice() && st.rdev === 0);
  });
}
