// A private dockerd for tests: its own data root, exec root, pidfile and API socket
// (under a temp dir), no bridge, no iptables; dockerd starts its own containerd under
// the exec root. Stopped by PID in teardown, then everything mounted below its dirs is
// detached before tempDir removes them.
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { mountTable } from './mounts';
import { run, type RunOptions, type RunResult } from './proc';
import type { Teardown } from './tmp';

export interface Dockerd {
  readonly dataRoot: string;
  readonly host: string;
  readonly log: string;
  /** the docker client against this daemon */
  docker(args: readonly string[], opts?: RunOptions): Promise<RunResult>;
  /** like docker() but throws with stderr unless it exits 0; resolves with stdout */
  dockerOk(args: readonly string[], opts?: RunOptions): Promise<string>;
}

export const hasDocker = (): boolean =>
  ['/usr/sbin/dockerd', '/usr/bin/dockerd'].some((p) => fs.existsSync(p)) && fs.existsSync('/usr/bin/docker');

async function waitExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return true;
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

/** Starts dockerd with `--storage-driver=DRIVER` under `base`; resolves once it answers. */
export async function startDockerd(t: Teardown, base: string, driver: string): Promise<Dockerd> {
  const dataRoot = path.join(base, 'data');
  const execRoot = path.join(base, 'exec');
  const sock = path.join(base, 'docker.sock');
  const log = path.join(base, 'dockerd.log');
  const config = path.join(base, 'client-config');
  fs.mkdirSync(config, { recursive: true });
  const host = `unix://${sock}`;
  const out = fs.openSync(log, 'a');
  const child = spawn('dockerd', [
    '--experimental', `--storage-driver=${driver}`, '--data-root', dataRoot, '--exec-root', execRoot,
    '--pidfile', path.join(base, 'dockerd.pid'), '-H', host,
    '--bridge=none', '--iptables=false', '--ip-masq=false',
  ], { stdio: ['ignore', out, out] });
  fs.closeSync(out);
  t.teardown(async () => {
    child.kill('SIGTERM');
    if (!(await waitExit(child, 30_000))) {
      child.kill('SIGKILL');
      await waitExit(child, 5_000);
    }
    const below = [...(await mountTable()).keys()].filter((m) => m.startsWith(`${dataRoot}/`) || m.startsWith(`${execRoot}/`));
    for (const m of below.sort().reverse()) await run('umount', ['-l', m], { timeoutMs: 20_000 });
  });
  const env: NodeJS.ProcessEnv = { ...process.env, DOCKER_CONFIG: config, DOCKER_HOST: host };
  delete env.NODE_OPTIONS;
  const docker = (args: readonly string[], opts: RunOptions = {}): Promise<RunResult> =>
    run('docker', args, { timeoutMs: 120_000, ...opts, env });
  const dockerOk = async (args: readonly string[], opts: RunOptions = {}): Promise<string> => {
    const r = await docker(args, opts);
    if (r.code !== 0) throw new Error(`docker ${args.join(' ')}: exit ${r.code}\n${r.stderr.trim()}`);
    return r.stdout;
  };
  for (let i = 0; ; i++) {
    if (child.exitCode !== null) throw new Error(`dockerd exited (${child.exitCode}):\n${fs.readFileSync(log, 'utf8').slice(-2000)}`);
    const r = await docker(['version', '--format', '{{.Server.Version}}'], { timeoutMs: 10_000 });
    if (r.code === 0) break;
    if (i > 120) throw new Error(`dockerd did not answer:\n${fs.readFileSync(log, 'utf8').slice(-2000)}`);
    await new Promise((res) => setTimeout(res, 500));
  }
  return { dataRoot, host, log, docker, dockerOk };
}
