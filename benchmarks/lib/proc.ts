/**
 * Child processes and mount bookkeeping. The benchmark process never touches a mount
 * itself: every access to a merged directory happens in a child (shell tools), and the
 * state of mounts is read from /proc/self/mountinfo, which never blocks on a FUSE daemon.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';

export interface ChildResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  seconds: number;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

export interface RunOptions {
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
}

const KEEP_BYTES = 8192;

/** Keeps the last KEEP_BYTES bytes of a stream. */
function tail(acc: string, chunk: Buffer): string {
  const s = acc + chunk.toString('utf8');
  return s.length > KEEP_BYTES ? s.slice(s.length - KEEP_BYTES) : s;
}

/** The children now running, so an interrupt can end them (by process group id). */
const running = new Set<number>();

export function killRunning(): void {
  for (const pid of running) {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

/**
 * Runs FILE ARGS as its own process group; the time is taken from spawn to exit.
 * Output is kept (tail only). A child that outlives the timeout is killed with its group.
 */
export function run(file: string, args: string[], opts: RunOptions = {}): Promise<ChildResult> {
  return new Promise((resolve) => {
    const start = process.hrtime.bigint();
    const child = spawn(file, args, {
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: opts.env ?? process.env,
    });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    let settled = false;
    child.stdout.on('data', (c: Buffer) => (stdout = tail(stdout, c)));
    child.stderr.on('data', (c: Buffer) => (stderr = tail(stderr, c)));
    if (child.pid !== undefined) running.add(child.pid);
    const timer =
      opts.timeoutMs === undefined
        ? undefined
        : setTimeout(() => {
            timedOut = true;
            if (child.pid !== undefined) {
              try {
                process.kill(-child.pid, 'SIGKILL');
              } catch {
                // already gone
              }
            }
          }, opts.timeoutMs);
    const finish = (code: number | null, signal: NodeJS.Signals | null, seconds: number): void => {
      if (settled) return;
      settled = true;
      if (timer) clearTimeout(timer);
      if (child.pid !== undefined) running.delete(child.pid);
      resolve({ code, signal, seconds, stdout, stderr, timedOut });
    };
    child.on('error', (e) => {
      stderr += `cannot run ${file}: ${e.message}`;
      finish(null, null, 0);
    });
    child.on('exit', (code, signal) => {
      const seconds = Number(process.hrtime.bigint() - start) / 1e9;
      // a daemonising grandchild may keep our pipes open: do not wait for them long
      const grace = setTimeout(() => {
        child.stdout.destroy();
        child.stderr.destroy();
        finish(code, signal, seconds);
      }, 500);
      child.on('close', () => {
        clearTimeout(grace);
        finish(code, signal, seconds);
      });
    });
  });
}

/** `sh -c SCRIPT`, with extra environment variables. */
export function sh(script: string, env: Record<string, string> = {}, timeoutMs?: number): Promise<ChildResult> {
  return run('/bin/sh', ['-c', script], { env: { ...process.env, ...env }, timeoutMs });
}

/** A one-line description of a failed child, for reports. */
export function describeFailure(what: string, r: ChildResult): string {
  let how: string;
  if (r.timedOut) how = `timed out after ${r.seconds.toFixed(1)} s`;
  else if (r.signal) how = `killed by ${r.signal}`;
  else how = `exit ${r.code}`;
  const err = r.stderr.trim().split('\n').slice(-5).join(' | ');
  return `${what}: ${how}${err ? `: ${err}` : ''}`;
}

export function ok(r: ChildResult): boolean {
  return r.code === 0 && !r.timedOut;
}

/** Single-quotes a string for sh. */
export function q(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

export interface MountEntry {
  /** "major:minor" of the mounted filesystem */
  dev: string;
  mountpoint: string;
  fstype: string;
}

function unescapeMountinfo(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_m, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/** Mounts of this mount namespace, from /proc/self/mountinfo. */
export function mounts(): MountEntry[] {
  const out: MountEntry[] = [];
  for (const line of fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    if (!line) continue;
    const [left, right] = line.split(' - ');
    const f = left.split(' ');
    const r = (right ?? '').split(' ');
    out.push({ dev: f[2], mountpoint: unescapeMountinfo(f[4]), fstype: r[0] ?? '' });
  }
  return out;
}

export function mountAt(dir: string): MountEntry | undefined {
  const found = mounts().filter((m) => m.mountpoint === dir);
  return found[found.length - 1];
}

/** Mounts at or below DIR, deepest first. */
export function mountsUnder(dir: string): MountEntry[] {
  return mounts()
    .filter((m) => m.mountpoint === dir || m.mountpoint.startsWith(`${dir}/`))
    .sort((a, b) => b.mountpoint.length - a.mountpoint.length);
}

/**
 * Processes whose command line names DIR as an argument (the daemon serving a mount at
 * DIR names it so). DIR is a unique path inside this run's scratch directory.
 */
export function processesNaming(dir: string): number[] {
  const pids: number[] = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      const argv = fs.readFileSync(`/proc/${name}/cmdline`, 'latin1').split('\0');
      if (argv.includes(dir)) pids.push(Number(name));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const DROP_CACHES_FILE = '/proc/sys/vm/drop_caches';

/** Whether this process may drop the page, dentry and inode caches (root, writable /proc/sys). */
export function canDropCaches(): boolean {
  try {
    fs.accessSync(DROP_CACHES_FILE, fs.constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

/** Shell text that writes dirty data back and then, when allowed, drops the caches. */
export function dropCachesScript(): string {
  return canDropCaches() ? `sync && echo 3 > ${DROP_CACHES_FILE}` : 'sync';
}
