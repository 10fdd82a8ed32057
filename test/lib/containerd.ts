// containerd 1.7 and Docker 26 (Debian trixie's, unpacked by scripts/trixie-clients.sh
// into a private prefix) with the stratafs snapshotter, for tests: each instance has its
// own state dirs, sockets and config under a temp dir, so it never meets the machine's
// containerd or Debian's docker 20.10 the graph-driver tests use. Everything started is
// stopped by PID in teardown; whatever is still mounted below the dirs is detached.
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { mountTable, REPO_ROOT, STRATAFS_BIN } from './mounts';
import { run, runOk, type RunOptions, type RunResult } from './proc';
import type { Teardown } from './tmp';

export const TRIXIE_PREFIX = process.env.STRATAFS_TRIXIE_CLIENTS ?? '/var/cache/stratafs-tests/trixie-clients';

/** The unpacked trixie packages (fetched now if install-deps.sh has not). */
export async function trixieRoot(): Promise<string> {
  return (await runOk('bash', [path.join(REPO_ROOT, 'scripts', 'trixie-clients.sh'), TRIXIE_PREFIX], { timeoutMs: 600_000 })).trim();
}

/**
 * PATH for containerd, its shims and dockerd: stratafs first (mount.fuse3 runs it for
 * fuse3.stratafs mounts), then the trixie binaries, node (bin/stratafs starts it), the system.
 */
export function clientPath(root: string): string {
  return [path.dirname(STRATAFS_BIN), path.join(root, 'usr', 'bin'), path.join(root, 'usr', 'sbin'),
    path.dirname(process.execPath), '/usr/sbin', '/usr/bin', '/sbin', '/bin'].join(':');
}

function cleanEnv(root: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, PATH: clientPath(root) };
  delete env.NODE_OPTIONS;
  return env;
}

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

async function stop(child: ChildProcess, ms = 30_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  if (!(await waitExit(child, ms))) {
    child.kill('SIGKILL');
    await waitExit(child, 5_000);
  }
}

async function detachBelow(dirs: string[]): Promise<void> {
  const below = [...(await mountTable()).keys()].filter((m) => dirs.some((d) => m === d || m.startsWith(`${d}/`)));
  for (const m of below.sort().reverse()) await run('umount', ['-l', m], { timeoutMs: 20_000 });
}

export interface SnapshotterProc {
  readonly address: string;
  readonly root: string;
  readonly child: ChildProcess;
  /** kill -9 (nothing cleaned up), then start again on the same socket and root */
  killAndRestart(): Promise<void>;
}

/** `stratafs snapshotter` under `base`; resolves once it listens. */
export async function startSnapshotterProc(t: Teardown, base: string): Promise<SnapshotterProc> {
  const address = path.join(base, 'snapshotter.sock');
  const root = path.join(base, 'snapshotter-root');
  const logFile = path.join(base, 'snapshotter.log');
  const listening = (): number => (fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8').split('listening on').length - 1 : 0);
  const launch = async (): Promise<ChildProcess> => {
    const before = listening();
    const out = fs.openSync(logFile, 'a');
    const child = spawn('env', ['-u', 'NODE_OPTIONS', STRATAFS_BIN, 'snapshotter', '--address', address, '--root', root, '-d'],
      { stdio: ['ignore', out, out] });
    fs.closeSync(out);
    t.teardown(() => stop(child));
    for (let i = 0; listening() === before; i++) {
      if (child.exitCode !== null || i > 400) throw new Error(`snapshotter did not start:\n${fs.readFileSync(logFile, 'utf8').slice(-2000)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    return child;
  };
  const proc = { address, root, child: await launch() } as { -readonly [K in keyof SnapshotterProc]: SnapshotterProc[K] };
  proc.killAndRestart = async () => {
    proc.child.kill('SIGKILL');
    await waitExit(proc.child, 10_000);
    proc.child = await launch();
  };
  return proc;
}

export interface Containerd {
  readonly address: string;
  readonly root: string;
  readonly state: string;
  readonly log: string;
  readonly prefix: string;
  /** ctr against this containerd */
  ctr(args: readonly string[], opts?: RunOptions): Promise<RunResult>;
  /** like ctr() but throws with stderr unless it exits 0; resolves with stdout */
  ctrOk(args: readonly string[], opts?: RunOptions): Promise<string>;
}

/** containerd under `base` with `snapshotter` as the proxy snapshotter named "stratafs". */
export async function startContainerd(t: Teardown, base: string, snapshotter: SnapshotterProc): Promise<Containerd> {
  const prefix = await trixieRoot();
  const address = path.join(base, 'containerd.sock');
  const root = path.join(base, 'containerd-root');
  const state = path.join(base, 'containerd-state');
  const log = path.join(base, 'containerd.log');
  const config = path.join(base, 'containerd.toml');
  fs.writeFileSync(config, [
    'version = 2',
    `root = ${JSON.stringify(root)}`,
    `state = ${JSON.stringify(state)}`,
    'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
    '[grpc]', `  address = ${JSON.stringify(address)}`,
    '[ttrpc]', `  address = ${JSON.stringify(`${address}.ttrpc`)}`,
    '[proxy_plugins]', '  [proxy_plugins.stratafs]', '    type = "snapshot"', `    address = ${JSON.stringify(snapshotter.address)}`,
    '',
  ].join('\n'));
  const env = cleanEnv(prefix);
  const out = fs.openSync(log, 'a');
  const child = spawn(path.join(prefix, 'usr', 'bin', 'containerd'), ['--config', config], { stdio: ['ignore', out, out], env });
  fs.closeSync(out);
  const ctr = (args: readonly string[], opts: RunOptions = {}): Promise<RunResult> =>
    run(path.join(prefix, 'usr', 'bin', 'ctr'), ['-a', address, ...args], { timeoutMs: 120_000, env, ...opts });
  const ctrOk = async (args: readonly string[], opts: RunOptions = {}): Promise<string> => {
    const r = await ctr(args, opts);
    if (r.code !== 0) throw new Error(`ctr ${args.join(' ')}: exit ${r.code ?? r.signal}\n${r.stderr.trim()}`);
    return r.stdout;
  };
  t.teardown(async () => {
    // tasks first (their shims hold the rootfs mounts), then containerd itself
    const tasks = await ctr(['-n', 'default', 'tasks', 'ls', '-q'], { timeoutMs: 20_000 });
    for (const id of tasks.stdout.split('\n').filter(Boolean)) {
      await ctr(['tasks', 'kill', '-s', 'SIGKILL', id], { timeoutMs: 20_000 });
      await ctr(['tasks', 'delete', '-f', id], { timeoutMs: 20_000 });
    }
    await stop(child);
    await detachBelow([root, state, snapshotter.root]);
  });
  for (let i = 0; ; i++) {
    if (child.exitCode !== null) throw new Error(`containerd exited (${child.exitCode}):\n${fs.readFileSync(log, 'utf8').slice(-2000)}`);
    if ((await ctr(['version'], { timeoutMs: 10_000 })).code === 0) break;
    if (i > 120) throw new Error(`containerd did not answer:\n${fs.readFileSync(log, 'utf8').slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 250));
  }
  return { address, root, state, log, prefix, ctr, ctrOk };
}

/** mounts of type `fstype` (any, if not given) at or below any of `dirs` */
export async function mountsUnder(dirs: string[], fstype?: string): Promise<string[]> {
  const table = await mountTable();
  return [...table.entries()]
    .filter(([m, type]) => dirs.some((d) => m === d || m.startsWith(`${d}/`)) && (fstype === undefined || type === fstype))
    .map(([m]) => m);
}

/** pids of stratafs mount daemons whose mountpoint lies below `dir` */
export function mountDaemonsUnder(dir: string): number[] {
  const pids: number[] = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const argv = fs.readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0');
      if (argv.some((a) => /bin\/stratafs\.js$/.test(a)) && argv.some((a) => a.startsWith(`${dir}/`)) && !argv.includes('snapshotter')) pids.push(Number(d));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

export interface Dockerd26 {
  readonly host: string;
  readonly log: string;
  docker(args: readonly string[], opts?: RunOptions): Promise<RunResult>;
  dockerOk(args: readonly string[], opts?: RunOptions): Promise<string>;
}

/**
 * Docker 26 (trixie's dockerd) on `cd` with the containerd image store and `driver` as
 * its snapshotter, under `base/name`: own data root, exec root, API socket, pidfile and
 * containerd namespaces (so two of them share one containerd without meeting).
 */
export async function startDockerd26(t: Teardown, base: string, name: string, cd: Containerd, driver: string): Promise<Dockerd26> {
  const dir = path.join(base, name);
  fs.mkdirSync(path.join(dir, 'client'), { recursive: true });
  const config = path.join(dir, 'daemon.json');
  fs.writeFileSync(config, JSON.stringify({ features: { 'containerd-snapshotter': true }, 'storage-driver': driver }));
  const host = `unix://${path.join(dir, 'docker.sock')}`;
  const log = path.join(dir, 'dockerd.log');
  const ns = `stratafs-test-${name}-${process.pid}`;
  const env = cleanEnv(cd.prefix);
  const out = fs.openSync(log, 'a');
  const child = spawn(path.join(cd.prefix, 'usr', 'sbin', 'dockerd'), [
    '--config-file', config, '--containerd', cd.address, '--containerd-namespace', ns,
    '--containerd-plugins-namespace', `${ns}-plugins`, '--data-root', path.join(dir, 'data'),
    '--exec-root', path.join(dir, 'exec'), '--pidfile', path.join(dir, 'dockerd.pid'), '-H', host,
    '--bridge=none', '--iptables=false', '--ip-masq=false',
  ], { stdio: ['ignore', out, out], env });
  fs.closeSync(out);
  const clientEnv: NodeJS.ProcessEnv = { ...env, DOCKER_HOST: host, DOCKER_CONFIG: path.join(dir, 'client'), DOCKER_BUILDKIT: '0' };
  const docker = (args: readonly string[], opts: RunOptions = {}): Promise<RunResult> =>
    run(path.join(cd.prefix, 'usr', 'bin', 'docker'), args, { timeoutMs: 300_000, env: clientEnv, ...opts });
  const dockerOk = async (args: readonly string[], opts: RunOptions = {}): Promise<string> => {
    const r = await docker(args, opts);
    if (r.code !== 0) throw new Error(`docker ${args.join(' ')}: exit ${r.code ?? r.signal}\n${r.stderr.trim()}`);
    return r.stdout;
  };
  t.teardown(async () => {
    const ids = (await docker(['ps', '-aq'], { timeoutMs: 30_000 })).stdout.split('\n').filter(Boolean);
    if (ids.length > 0) await docker(['rm', '-f', ...ids], { timeoutMs: 60_000 });
    await stop(child);
    await detachBelow([dir]);
  });
  for (let i = 0; ; i++) {
    if (child.exitCode !== null) throw new Error(`dockerd exited (${child.exitCode}):\n${fs.readFileSync(log, 'utf8').slice(-2000)}`);
    if ((await docker(['version', '--format', '{{.Server.Version}}'], { timeoutMs: 10_000 })).code === 0) break;
    if (i > 120) throw new Error(`dockerd did not answer:\n${fs.readFileSync(log, 'utf8').slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 500));
  }
  return { host, log, docker, dockerOk };
}
