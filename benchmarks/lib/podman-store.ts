/**
 * Podman stores for the podman benchmarks (benchmarks/podman.ts): one store per mount
 * program (or none: podman's own kernel overlay driver), selected through
 * CONTAINERS_STORAGE_CONF / CONTAINERS_CONF; a `stratafs daemon` for the setup that
 * hands mounts to it; clean-up that leaves nothing mounted.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { mounts, run, type ChildResult } from './proc';

export const TIMEOUT_MS = 600_000;

export function findOnPath(name: string): string {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    const p = path.join(dir, name);
    if (dir && fs.existsSync(p)) return p;
  }
  return '';
}

/**
 * A podman store using PROGRAM as mount_program (none when PROGRAM is empty: the
 * kernel overlay driver); returns its environment.
 */
export function writeStore(dir: string, program: string, mountopt?: string): NodeJS.ProcessEnv {
  for (const d of ['root', 'run', 'tmp', 'libpod']) fs.mkdirSync(path.join(dir, d), { recursive: true });
  const q = (s: string): string => JSON.stringify(s);
  const storage = path.join(dir, 'storage.conf');
  const containers = path.join(dir, 'containers.conf');
  fs.writeFileSync(storage, `[storage]\ndriver = "overlay"\ngraphroot = ${q(path.join(dir, 'root'))}\nrunroot = ${q(path.join(dir, 'run'))}\n[storage.options.overlay]\n${program ? `mount_program = ${q(program)}\n` : ''}${mountopt ? `mountopt = ${q(mountopt)}\n` : ''}`);
  // runc fails with these machines' default rlimits
  fs.writeFileSync(containers, `[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]\n[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "none"\ntmp_dir = ${q(path.join(dir, 'libpod'))}\n`);
  return { ...process.env, CONTAINERS_STORAGE_CONF: storage, CONTAINERS_CONF: containers, TMPDIR: path.join(dir, 'tmp') };
}

/** `stratafs daemon --socket SOCK`, started from STRATAFS (bin/stratafs); resolves once it listens. */
export async function startDaemon(stratafs: string, sock: string): Promise<ChildProcess> {
  const env = { ...process.env };
  delete env.NODE_OPTIONS;
  const daemon = spawn(stratafs, ['daemon', '--socket', sock], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  daemon.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  for (let i = 0; i < 400 && !err.includes('listening'); i++) {
    if (daemon.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  if (!err.includes('listening')) {
    daemon.kill('SIGTERM');
    throw new Error(`stratafs daemon did not start: ${err.trim()}`);
  }
  return daemon;
}

/** Stops a daemon started here (by its PID): it unmounts what it still serves. */
export async function stopDaemon(daemon: ChildProcess): Promise<void> {
  if (daemon.exitCode !== null || daemon.signalCode !== null) return;
  const exited = new Promise((r) => daemon.once('exit', r));
  daemon.kill('SIGTERM');
  await exited;
}

export const podman = (env: NodeJS.ProcessEnv, args: string[]): Promise<ChildResult> => run('podman', args, { env, timeoutMs: TIMEOUT_MS });

export async function cleanup(dir: string, envs: NodeJS.ProcessEnv[], daemon?: ChildProcess): Promise<void> {
  for (const env of envs) {
    await podman(env, ['rm', '--all', '--force', '--time', '0']);
    await podman(env, ['rmi', '--all', '--force']);
  }
  if (daemon) await stopDaemon(daemon);
  for (const m of mounts().filter((e) => e.mountpoint.startsWith(`${dir}/`)).reverse()) {
    await run('umount', ['-l', m.mountpoint], { timeoutMs: 30_000 });
  }
  if (mounts().some((e) => e.mountpoint.startsWith(`${dir}/`))) throw new Error(`not removing ${dir}: still mounted`);
  fs.rmSync(dir, { recursive: true, force: true });
}

