// Rootless podman for tests: a new, uniquely named user with /etc/subuid and /etc/subgid
// ranges, its own storage.conf (mount_program = the stratafs under test, or another
// program) and containers.conf, and a way to run podman as that user.
//
// /dev/fuse: distributions ship it 0666; this machine may have it 0600. Instead of
// changing the host's device (other tests run meanwhile), every command runs in a
// private mount namespace where a 0666 node of the same device is bind-mounted over
// /dev/fuse. podman's pause process keeps the user and mount namespaces it made there,
// and later commands join them, so every mount program sees the 0666 device.
//
// Teardown (even after a failure): the user's processes (pause process, conmon,
// daemons) are ended by pid, the user and its subordinate ranges removed, the temp dir
// with its store removed.
import { spawnSync } from 'node:child_process';
import { chmod, chown, cp, mkdir, stat, writeFile } from 'node:fs/promises';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { CONTAINER_ULIMITS, HOST_PATH } from './containers';
import { STRATAFS_BIN } from './mounts';
import { run, runOk, type RunOptions, type RunResult } from './proc';
import { tempDir, type Teardown } from './tmp';

const TOOL_TIMEOUT_MS = 120_000;
const RANGE = 65536;

export interface RootlessStore {
  readonly user: string;
  readonly uid: number;
  readonly dir: string;
  /** what the user runs as its mount program (a readable copy of the repo if needed) */
  readonly mountProgram: string;
  podman(args: readonly string[], opts?: RunOptions): Promise<RunResult>;
  podmanOk(args: readonly string[], opts?: RunOptions): Promise<string>;
}

function toml(s: string): string {
  return JSON.stringify(s);
}

/** pids of every process of UID (ours to end: the user exists only for this test). */
function pidsOf(uid: number): number[] {
  const pids: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const m = /^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${d}/status`, 'latin1'));
      if (m && Number(m[1]) === uid) pids.push(Number(d));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

async function endProcesses(uid: number): Promise<void> {
  for (let round = 0; round < 50; round++) {
    const pids = pidsOf(uid);
    if (pids.length === 0) return;
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The highest id used by any range of FILE (/etc/subuid or /etc/subgid). */
function rangesEnd(file: string): number {
  let end = 0;
  let text = '';
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return end;
  }
  for (const line of text.split('\n')) {
    const [, start, count] = line.split(':');
    if (start !== undefined && count !== undefined) end = Math.max(end, Number(start) + Number(count));
  }
  return end;
}

function hasRange(file: string, user: string): boolean {
  try {
    return readFileSync(file, 'utf8').split('\n').some((l) => l.startsWith(`${user}:`));
  } catch {
    return false;
  }
}

/**
 * The repo must be readable by the new user (bin/stratafs runs as that user). When it
 * is not (a clone in root's home), a readable copy of what the launcher needs is made.
 */
async function readableProgram(user: string, dir: string): Promise<string> {
  const bin = STRATAFS_BIN;
  const probe = spawnSync('runuser', ['-u', user, '--', 'env', `PATH=${HOST_PATH}`, bin, '--version'], { encoding: 'utf8' });
  if (probe.status === 0) return bin;
  const copy = join(dir, 'stratafs');
  const root = join(bin, '..', '..');
  for (const part of ['bin', 'dist', 'package.json', 'node_modules', join('native-bindings', 'build')]) {
    await cp(join(root, part), join(copy, part), { recursive: true, verbatimSymlinks: true });
  }
  await runOk('chmod', ['-R', 'a+rX', copy]);
  return join(copy, 'bin', 'stratafs');
}

export async function rootlessStore(t: Teardown, opts: { mountProgram?: string } = {}): Promise<RootlessStore> {
  const user = `sfrl${randomBytes(4).toString('hex')}`;
  const dir = await tempDir(t, 'rootless');
  await chmod(dir, 0o755); // the user's home is inside
  const home = join(dir, 'home');
  await runOk('useradd', ['--home-dir', home, '--create-home', '--shell', '/bin/sh', '--user-group', user]);
  const uid = Number((await runOk('id', ['-u', user])).trim());
  t.teardown(async () => {
    await endProcesses(uid);
    await run('userdel', ['--force', user]);
    // userdel removes the ranges of shadow's own allocation; ranges added here too
    for (const file of ['/etc/subuid', '/etc/subgid']) {
      if (hasRange(file, user)) {
        const flag = file.endsWith('uid') ? '--del-subuids' : '--del-subgids';
        const line = readFileSync(file, 'utf8').split('\n').find((l) => l.startsWith(`${user}:`)) as string;
        const [, start, count] = line.split(':');
        await run('usermod', [flag, `${start}-${Number(start) + Number(count) - 1}`, user]);
      }
    }
  });
  // useradd may have allocated ranges (SUB_UID_MIN in login.defs); otherwise add some
  if (!hasRange('/etc/subuid', user) || !hasRange('/etc/subgid', user)) {
    const start = Math.max(rangesEnd('/etc/subuid'), rangesEnd('/etc/subgid'), 1_000_000) + RANGE;
    const range = `${start}-${start + RANGE - 1}`;
    await runOk('usermod', ['--add-subuids', range, '--add-subgids', range, user]);
  }
  const mountProgram = opts.mountProgram ?? (await readableProgram(user, dir));

  const runtime = join(home, 'run');
  await mkdir(runtime, { mode: 0o700 });
  await chown(runtime, uid, uid);
  const cfg = join(dir, 'cfg');
  await mkdir(cfg);
  const storageConf = join(cfg, 'storage.conf');
  const containersConf = join(cfg, 'containers.conf');
  await writeFile(storageConf, [
    '[storage]',
    'driver = "overlay"',
    `runroot = ${toml(join(runtime, 'containers'))}`,
    `graphroot = ${toml(join(home, 'storage'))}`,
    `rootless_storage_path = ${toml(join(home, 'storage'))}`,
    '[storage.options.overlay]',
    `mount_program = ${toml(mountProgram)}`,
    '',
  ].join('\n'));
  await writeFile(containersConf, [
    '[containers]',
    `default_ulimits = [${CONTAINER_ULIMITS.map(toml).join(', ')}]`,
    '[engine]',
    'cgroup_manager = "cgroupfs"',
    'events_logger = "none"',
    '',
  ].join('\n'));
  await runOk('chmod', ['-R', 'a+rX', cfg]);

  // a 0666 node of the fuse device, bind-mounted over /dev/fuse in a private mount namespace
  const dev = await stat('/dev/fuse');
  const devDir = join(dir, 'dev');
  await mkdir(devDir);
  const runner = join(dir, 'as-user.sh');
  const major = Math.floor(dev.rdev / 256) & 0xfff;
  const minor = (dev.rdev & 0xff) | ((dev.rdev >> 12) & 0xfff00);
  await writeFile(runner, [
    'set -e',
    `mount -t tmpfs -o mode=0755 tmpfs ${devDir}`,
    `mknod -m 0666 ${devDir}/fuse c ${major} ${minor}`,
    `mount --bind ${devDir}/fuse /dev/fuse`,
    `cd ${home}`,
    `exec runuser -u ${user} -- env -i HOME=${home} XDG_RUNTIME_DIR=${runtime} PATH=${HOST_PATH} ` +
      `CONTAINERS_STORAGE_CONF=${storageConf} CONTAINERS_CONF=${containersConf} TMPDIR=${runtime} "$@"`,
    '',
  ].join('\n'));
  const asUser = (args: readonly string[], o: RunOptions = {}) =>
    run('unshare', ['--mount', '--propagation', 'private', 'sh', runner, ...args], { timeoutMs: TOOL_TIMEOUT_MS, ...o });
  const podman = (args: readonly string[], o: RunOptions = {}) => asUser(['podman', ...args], o);
  const podmanOk = async (args: readonly string[], o: RunOptions = {}) => {
    const r = await podman(args, o);
    if (r.code !== 0) throw new Error(`podman ${args.join(' ')} (as ${user}): exit ${r.code ?? r.signal}\n${r.stderr.trim()}`);
    return r.stdout;
  };
  return { user, uid, dir, mountProgram, podman, podmanOk };
}
