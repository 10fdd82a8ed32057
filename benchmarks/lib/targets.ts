/**
 * The filesystems compared. Each repetition of a workload gets a fresh upper and work
 * dir and a fresh mount; "native" is the merged content as one plain directory.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Dataset } from './dataset';
import type { TargetName } from './options';
import { describeFailure, dropCachesScript, mountAt, ok, processesNaming, q, run, sleep, type ChildResult } from './proc';

export interface RunDirs {
  base: string;
  upper: string;
  work: string;
  mnt: string;
}

export interface Target {
  name: TargetName;
  /** why the target cannot run here, or undefined */
  unavailable(): Promise<string | undefined>;
  /** the directory workloads run in */
  root(ds: Dataset, dirs: RunDirs): string;
  mount(ds: Dataset, dirs: RunDirs): Promise<void>;
  unmount(dirs: RunDirs): Promise<string[]>;
  /**
   * Shell text that mounts LOWERS (top first) with UPPER and WORK at MNT and returns once
   * the mount is ready, for workloads that time mounting itself (absent for native).
   */
  mountShell?(lowers: string[], upper: string, work: string, mnt: string): string;
  /** shell text that unmounts MNT */
  unmountShell?(mnt: string): string;
  /** before the first mount of the run (in the run's scratch dir) */
  setup?(scratch: string): Promise<void>;
  /** after the last unmount of the run; returns notes */
  teardown?(): Promise<string[]>;
  /** memory of a process that outlives the mounts (the shared daemon), measured at the end */
  memory?(): Promise<DaemonMemory | undefined>;
}

/** RSS of a long-lived daemon after the whole run, and again after the kernel dropped its caches */
export interface DaemonMemory {
  rssMiB: number;
  rssAfterDropMiB: number;
}

function rssMiB(pid: number): number | undefined {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Math.round(Number(m[1]) / 102.4) / 10 : undefined;
  } catch {
    return undefined;
  }
}

const optionsOf = (lowers: string[], upper: string, work: string): string => `lowerdir=${lowers.join(':')},upperdir=${upper},workdir=${work}`;

function overlayOptions(ds: Dataset, dirs: RunDirs): string {
  return optionsOf(ds.lowers, dirs.upper, dirs.work);
}

async function mountWith(what: string, p: Promise<ChildResult>, mnt: string): Promise<void> {
  const r = await p;
  if (!ok(r)) throw new Error(describeFailure(what, r));
  if (!mountAt(mnt)) throw new Error(`${what}: exited 0 but nothing is mounted at ${mnt}`);
}

/** Ends a FUSE connection whose daemon does not answer (fusectl), without touching the mount. */
function abortFuse(mnt: string): boolean {
  const m = mountAt(mnt);
  if (!m) return false;
  const minor = m.dev.split(':')[1];
  try {
    fs.writeFileSync(`/sys/fs/fuse/connections/${minor}/abort`, '1');
    return true;
  } catch {
    return false;
  }
}

/**
 * Unmounts a FUSE mount and waits for its daemon (found by the unique mountpoint in its
 * argv) to exit; a daemon still there after 10 s is killed by pid. Returns notes.
 */
export async function unmountFuse(mnt: string): Promise<string[]> {
  const notes: string[] = [];
  const daemons = processesNaming(mnt);
  if (mountAt(mnt)) {
    const r = await run('fusermount3', ['-u', mnt], { timeoutMs: 30_000 });
    if (!ok(r) || mountAt(mnt)) {
      notes.push(describeFailure(`fusermount3 -u ${mnt}`, r));
      if (abortFuse(mnt)) notes.push('connection aborted through fusectl');
      await run('umount', ['-l', mnt], { timeoutMs: 30_000 });
    }
  }
  for (let i = 0; i < 100; i++) {
    if (daemons.every((pid) => !isAlive(pid))) return notes;
    await sleep(100);
  }
  for (const pid of daemons.filter(isAlive)) {
    notes.push(`daemon ${pid} still running 10 s after unmount: killed`);
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
  return notes;
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export async function unmountKernel(mnt: string): Promise<string[]> {
  if (!mountAt(mnt)) return [];
  const r = await run('umount', [mnt], { timeoutMs: 30_000 });
  if (ok(r) && !mountAt(mnt)) return [];
  await run('umount', ['-l', mnt], { timeoutMs: 30_000 });
  return [describeFailure(`umount ${mnt}`, r)];
}

async function onPath(cmd: string): Promise<boolean> {
  const r = await run('/bin/sh', ['-c', `command -v ${cmd}`]);
  return ok(r);
}

/**
 * One `stratafs daemon --socket SOCK` serving every mount of the `stratafs-daemon`
 * target: the launcher hands each mount to it (STRATAFS_SERVER), so a mount starts no
 * Node.js, and the daemon's code stays warm from one workload to the next, as with
 * podman's `mountopt = "server=SOCK"`.
 */
class SharedDaemon {
  private child: ChildProcess | undefined;
  socket = '';

  constructor(private readonly launcher: string) {}

  async start(scratch: string): Promise<void> {
    this.socket = path.join(scratch, 'stratafs-daemon.sock');
    // through the launcher, as users start it (its node flags: bin/stratafs); it execs node, same pid
    const child = spawn(this.launcher, ['daemon', '--socket', this.socket], {
      detached: true,
      stdio: 'ignore',
      env: { ...process.env, STRATAFS_NODE: process.execPath },
    });
    this.child = child;
    for (let i = 0; i < 300 && !fs.existsSync(this.socket); i++) {
      if (child.exitCode !== null) break;
      await sleep(50);
    }
    if (!fs.existsSync(this.socket)) throw new Error(`stratafs daemon: no socket at ${this.socket} after 15 s`);
  }

  /** SIGTERM (it unmounts what it still serves and exits), SIGKILL by pid after 10 s */
  async stop(): Promise<string[]> {
    const child = this.child;
    this.child = undefined;
    if (!child?.pid || child.exitCode !== null) return [];
    child.kill('SIGTERM');
    for (let i = 0; i < 100 && child.exitCode === null && child.signalCode === null; i++) await sleep(100);
    if (child.exitCode !== null || child.signalCode !== null) return [];
    child.kill('SIGKILL');
    return [`stratafs daemon ${child.pid} still running 10 s after SIGTERM: killed`];
  }

  env(): NodeJS.ProcessEnv {
    return { ...process.env, STRATAFS_SERVER: this.socket };
  }

  /**
   * Its RSS now (every mount of the run gone), then after sync + drop_caches (which
   * makes the kernel forget the inodes it held, and with them the daemon's nodes) and
   * 15 s in which the daemon, idle, gives memory back (src/server/idle-memory).
   */
  async memory(): Promise<DaemonMemory | undefined> {
    const pid = this.child?.pid;
    if (pid === undefined) return undefined;
    await sleep(3000);
    const before = rssMiB(pid);
    const r = await run('/bin/sh', ['-c', dropCachesScript()], { timeoutMs: 120_000 });
    if (!ok(r)) return undefined;
    // the daemon gives memory back once idle for 10 s (src/server/idle-memory.ts)
    await sleep(15_000);
    const after = rssMiB(pid);
    return before === undefined || after === undefined ? undefined : { rssMiB: before, rssAfterDropMiB: after };
  }
}

/** the fuse module's switch for FUSE over io_uring (absent without CONFIG_FUSE_IO_URING) */
const ENABLE_URING = '/sys/module/fuse/parameters/enable_uring';

/**
 * `stratafs-uring` turns enable_uring on for the run (the kernel then offers the ring)
 * and puts back what it found; the other stratafs targets mount with `uring=off`, so
 * they stay on /dev/fuse reads whatever the switch says.
 */
class UringSwitch {
  private previous: string | undefined;
  unavailable(): string | undefined {
    if (!fs.existsSync(ENABLE_URING)) return `the kernel lacks CONFIG_FUSE_IO_URING (no ${ENABLE_URING})`;
    return process.getuid?.() === 0 ? undefined : `setting ${ENABLE_URING} needs root`;
  }
  on(): void {
    this.previous = fs.readFileSync(ENABLE_URING, 'utf8').trim();
    fs.writeFileSync(ENABLE_URING, 'Y');
  }
  restore(): string[] {
    if (this.previous === undefined) return [];
    fs.writeFileSync(ENABLE_URING, this.previous);
    const notes = [`enable_uring put back to ${this.previous}`];
    this.previous = undefined;
    return notes;
  }
}

/**
 * The mount's daemon serves it through an io_uring (a process naming MNT holds one). The
 * stat first waits for INIT, after which the daemon registers its ring (the CLI reports
 * the mount before the daemon has answered INIT).
 */
function servedByRing(mnt: string): boolean {
  fs.statSync(mnt);
  return processesNaming(mnt).some((pid) => {
    try {
      return fs.readdirSync(`/proc/${pid}/fd`).some((fd) => fs.readlinkSync(`/proc/${pid}/fd/${fd}`) === 'anon_inode:[io_uring]');
    } catch {
      return false;
    }
  });
}

export function makeTargets(repoRoot: string): Record<TargetName, Target> {
  const overlayRoot = (_ds: Dataset, dirs: RunDirs): string => dirs.mnt;
  const cli = path.join(repoRoot, 'bin', 'stratafs');
  const built = (): Promise<string | undefined> =>
    Promise.resolve(fs.existsSync(path.join(repoRoot, 'dist', 'src', 'cli', 'main.js')) ? undefined : 'stratafs is not built (npm run build)');
  const daemon = new SharedDaemon(path.join(repoRoot, 'bin', 'stratafs'));
  const uring = new UringSwitch();
  const devFuse = (options: string): string => `${options},uring=off`;
  return {
    native: {
      name: 'native',
      unavailable: async () => undefined,
      root: (ds) => ds.native,
      mount: async () => undefined,
      unmount: async () => [],
    },
    kernel: {
      name: 'kernel',
      unavailable: async () => (process.getuid?.() === 0 ? undefined : 'kernel overlayfs needs root here'),
      root: overlayRoot,
      mount: (ds, dirs) =>
        mountWith('mount -t overlay', run('mount', ['-t', 'overlay', 'overlay', '-o', overlayOptions(ds, dirs), dirs.mnt], { timeoutMs: 60_000 }), dirs.mnt),
      unmount: (dirs) => unmountKernel(dirs.mnt),
      mountShell: (lowers, upper, work, mnt) => `mount -t overlay overlay -o ${q(optionsOf(lowers, upper, work))} ${q(mnt)}`,
      unmountShell: (mnt) => `umount ${q(mnt)}`,
    },
    'fuse-overlayfs': {
      name: 'fuse-overlayfs',
      unavailable: async () => ((await onPath('fuse-overlayfs')) ? undefined : 'fuse-overlayfs is not installed'),
      root: overlayRoot,
      mount: (ds, dirs) =>
        mountWith('fuse-overlayfs', run('fuse-overlayfs', ['-o', overlayOptions(ds, dirs), dirs.mnt], { timeoutMs: 60_000 }), dirs.mnt),
      unmount: (dirs) => unmountFuse(dirs.mnt),
      mountShell: (lowers, upper, work, mnt) => `fuse-overlayfs -o ${q(optionsOf(lowers, upper, work))} ${q(mnt)}`,
      unmountShell: (mnt) => `fusermount3 -u ${q(mnt)}`,
    },
    stratafs: {
      name: 'stratafs',
      unavailable: built,
      root: overlayRoot,
      mount: (ds, dirs) =>
        mountWith('stratafs', run(cli, ['-o', devFuse(overlayOptions(ds, dirs)), dirs.mnt], { timeoutMs: 60_000 }), dirs.mnt),
      unmount: (dirs) => unmountFuse(dirs.mnt),
      mountShell: (lowers, upper, work, mnt) => `${q(cli)} -o ${q(devFuse(optionsOf(lowers, upper, work)))} ${q(mnt)}`,
      unmountShell: (mnt) => `fusermount3 -u ${q(mnt)}`,
    },
    'stratafs-daemon': {
      name: 'stratafs-daemon',
      unavailable: built,
      root: overlayRoot,
      setup: (scratch) => daemon.start(scratch),
      teardown: () => daemon.stop(),
      memory: () => daemon.memory(),
      mount: (ds, dirs) =>
        mountWith('stratafs (daemon)', run(cli, ['-o', devFuse(overlayOptions(ds, dirs)), dirs.mnt], { timeoutMs: 60_000, env: daemon.env() }), dirs.mnt),
      unmount: (dirs) => unmountFuse(dirs.mnt),
      mountShell: (lowers, upper, work, mnt) =>
        `STRATAFS_SERVER=${q(daemon.socket)} ${q(cli)} -o ${q(devFuse(optionsOf(lowers, upper, work)))} ${q(mnt)}`,
      unmountShell: (mnt) => `fusermount3 -u ${q(mnt)}`,
    },
    // a daemon per mount, as `stratafs`, with requests through FUSE over io_uring
    'stratafs-uring': {
      name: 'stratafs-uring',
      unavailable: async () => (await built()) ?? uring.unavailable(),
      root: overlayRoot,
      setup: async () => uring.on(),
      teardown: async () => uring.restore(),
      mount: async (ds, dirs) => {
        await mountWith('stratafs (io_uring)', run(cli, ['-o', `${overlayOptions(ds, dirs)},uring=auto`, dirs.mnt], { timeoutMs: 60_000 }), dirs.mnt);
        if (!servedByRing(dirs.mnt)) throw new Error(`stratafs-uring: ${dirs.mnt} is served through /dev/fuse, not io_uring`);
      },
      unmount: (dirs) => unmountFuse(dirs.mnt),
      mountShell: (lowers, upper, work, mnt) => `${q(cli)} -o ${q(`${optionsOf(lowers, upper, work)},uring=auto`)} ${q(mnt)}`,
      unmountShell: (mnt) => `fusermount3 -u ${q(mnt)}`,
    },
  };
}
