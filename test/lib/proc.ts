// Child processes for tests: run a program, feed stdin, collect output, enforce a timeout.
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import type { Teardown } from './tmp';

export interface RunResult {
  /** Exit code, or null when killed by a signal (see `signal`). */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

export interface RunOptions {
  input?: string;
  timeoutMs?: number;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
}

/** Run CMD ARGS to completion; never throws for a non-zero exit (check `code`). */
export function run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolveRun, rejectRun) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    const timer =
      opts.timeoutMs === undefined
        ? undefined
        : setTimeout(() => {
            timedOut = true;
            child.kill('SIGKILL');
          }, opts.timeoutMs);
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    child.on('error', (e) => {
      if (timer) clearTimeout(timer);
      rejectRun(new Error(`${cmd}: ${e.message}`));
    });
    child.on('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      resolveRun({
        code,
        signal,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
        timedOut,
      });
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(opts.input ?? '');
  });
}

/** Like run() but throws with the output when the program does not exit 0. */
export async function runOk(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<string> {
  const r = await run(cmd, args, opts);
  if (r.code !== 0) {
    const why = r.timedOut ? `timed out after ${opts.timeoutMs} ms` : `exit ${r.code ?? r.signal}`;
    throw new Error(`${cmd} ${args.join(' ')}: ${why}\n${r.stderr.trim()}`);
  }
  return r.stdout;
}

/**
 * Command line that runs a plain Node program: the test runner's hooks add its loaders
 * (TypeScript, process tracking) to NODE_OPTIONS of every child it spawns; the agent and
 * the stratafs daemon must run without them, so `env -u NODE_OPTIONS` drops them again.
 */
export function plainNode(args: readonly string[]): [string, string[]] {
  return ['env', ['-u', 'NODE_OPTIONS', process.execPath, ...args]];
}

/** The same for an executable that starts Node.js itself (bin/stratafs, a shell launcher). */
export function plainExec(args: readonly string[]): [string, string[]] {
  return ['env', ['-u', 'NODE_OPTIONS', ...args]];
}

/** pids of stratafs daemons serving `mnt` (found by their argv). */
export function daemonsFor(mnt: string): number[] {
  const pids: number[] = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d) || Number(d) === process.pid) continue;
    try {
      const argv = fs.readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0');
      if (argv.some((a) => /bin\/stratafs(\.js)?$/.test(a)) && argv.includes(mnt)) pids.push(Number(d));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

/** Polls `cond` until it holds or `ms` have passed; its last answer. */
export async function waitFor(cond: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (cond()) return true;
    await new Promise((r) => setTimeout(r, 25));
  }
  return cond();
}

export interface Listening {
  child: ChildProcess;
  /** what it wrote to stderr so far */
  stderr(): string;
  alive(): boolean;
}

/**
 * Starts a server program (`stratafs daemon`, `graphdriver`, ...; possibly behind a
 * wrapper such as prlimit or a umask shell), stops it with SIGTERM in teardown (waiting
 * for its exit), and returns once its stderr says "listening". `what` names it in errors.
 */
export async function spawnListening(t: Teardown, what: string, cmd: string, args: readonly string[],
  opts: { env?: NodeJS.ProcessEnv; waitMs?: number } = {}): Promise<Listening> {
  const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], env: opts.env ?? process.env });
  let err = '';
  child.stderr!.on('data', (d) => (err += d));
  const alive = (): boolean => child.exitCode === null && child.signalCode === null;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  t.teardown(async () => {
    if (alive()) child.kill('SIGTERM');
    await exited;
  });
  await waitFor(() => err.includes('listening') || !alive(), opts.waitMs ?? 10_000);
  if (!alive()) throw new Error(`${what} exited: ${err}`);
  if (!err.includes('listening')) throw new Error(`${what} did not start: ${err}`);
  return { child, stderr: () => err, alive };
}
