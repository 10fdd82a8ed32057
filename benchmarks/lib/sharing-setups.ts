/**
 * The setups of the layer-sharing measurement: N "containers" over the same lowers.
 * Overlay setups mount N times (one daemon per mount, or all mounts in one stratafs
 * process); the copy baselines give each container its own copy of the layers, as
 * Docker's vfs driver does, plainly or as reflinks where the filesystem can.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as readline from 'node:readline';
import type { Dataset } from './dataset';
import type { SharingName } from './options';
import { describeFailure, mounts, ok, processesNaming, q, run, sh, sleep } from './proc';
import { SERVER_MODULE } from './server-host';
import { isAlive, makeTargets, unmountFuse, type RunDirs } from './targets';

export interface Container {
  dirs: RunDirs;
  /** where the container's files are seen */
  root: string;
}

export interface Setup {
  name: SharingName;
  /** why this setup cannot run here, or undefined */
  unavailable(scratch: string): Promise<string | undefined>;
  /** makes one more container in DIRS (fresh, empty upper/work/mnt dirs) */
  add(ds: Dataset, dirs: RunDirs): Promise<Container>;
  /** the processes serving the containers (none for the kernel and the copies) */
  pids(): number[];
  /** undoes every container; returns notes on what did not go cleanly */
  teardown(): Promise<string[]>;
}

/** The filesystem type of the mount holding DIR (from mountinfo: ext4, xfs, btrfs ...). */
export function fsTypeOf(dir: string): string {
  const real = fs.realpathSync(dir);
  const holders = mounts().filter((m) => real === m.mountpoint || real.startsWith(m.mountpoint === '/' ? '/' : `${m.mountpoint}/`));
  holders.sort((a, b) => b.mountpoint.length - a.mountpoint.length);
  return holders[0]?.fstype ?? 'unknown';
}

/** Tries one reflink copy in SCRATCH: undefined when it works, else why not. */
async function reflinkProbe(scratch: string): Promise<string | undefined> {
  const a = path.join(scratch, 'reflink-probe.a');
  const b = path.join(scratch, 'reflink-probe.b');
  fs.writeFileSync(a, 'reflink probe\n');
  try {
    const r = await run('cp', ['--reflink=always', a, b]);
    if (ok(r)) return undefined;
    // cp names both (temporary) files; the reason is the last part of its message
    const why = r.stderr.trim().split('\n')[0].split(': ').pop() ?? `exit ${r.code}`;
    return `not supported on ${fsTypeOf(scratch)} (cp --reflink=always: ${why})`;
  } finally {
    fs.rmSync(a, { force: true });
    fs.rmSync(b, { force: true });
  }
}

function overlaySetup(name: 'kernel' | 'fuse-overlayfs' | 'stratafs', repoRoot: string): Setup {
  const target = makeTargets(repoRoot)[name];
  const made: RunDirs[] = [];
  return {
    name,
    unavailable: () => target.unavailable(),
    add: async (ds, dirs) => {
      made.push(dirs);
      await target.mount(ds, dirs);
      return { dirs, root: dirs.mnt };
    },
    pids: () => made.flatMap((d) => processesNaming(d.mnt)),
    teardown: async () => (await Promise.all(made.map((d) => target.unmount(d)))).flat(),
  };
}

function copySetup(name: 'full-copy' | 'reflink-copy'): Setup {
  const flags = name === 'reflink-copy' ? '-a --reflink=always' : '-a';
  return {
    name,
    unavailable: async (scratch) => (name === 'reflink-copy' ? reflinkProbe(scratch) : undefined),
    add: async (ds, dirs) => {
      const root = path.join(dirs.upper, 'rootfs');
      fs.mkdirSync(root);
      const r = await sh(`for l in ${[...ds.lowers].reverse().map(q).join(' ')}; do cp ${flags} "$l/." ${q(root)}/ || exit 1; done`);
      if (!ok(r)) throw new Error(describeFailure(`cp ${flags}`, r));
      return { dirs, root };
    },
    pids: () => [],
    teardown: async () => [],
  };
}

/** All mounts served by one stratafs process (src/server), through benchmarks/lib/server-host. */
function serverSetup(): Setup {
  let host: ChildProcessWithoutNullStreams | undefined;
  let replies: AsyncIterator<string> | undefined;
  const made: RunDirs[] = [];
  const start = (): void => {
    host = spawn(process.execPath, [path.join(__dirname, 'server-host.js')], { detached: true, stdio: ['pipe', 'pipe', 'pipe'] });
    host.stderr.resume();
    replies = readline.createInterface({ input: host.stdout })[Symbol.asyncIterator]();
  };
  return {
    name: 'stratafs-daemon',
    unavailable: async () => (fs.existsSync(SERVER_MODULE) ? undefined : 'this build has no one-process server (src/server)'),
    add: async (ds, dirs) => {
      if (!host) start();
      made.push(dirs);
      const spec = {
        lowerdirs: ds.lowers, upperdir: dirs.upper, workdir: dirs.work, mountpoint: dirs.mnt,
        readOnly: false, volatile: false, timeout: 86400, passthrough: 'auto', acl: true,
      };
      host?.stdin.write(`${JSON.stringify(spec)}\n`);
      const reply = await replies?.next();
      if (!reply || reply.done || reply.value !== 'ok') throw new Error(`stratafs server: ${reply?.done ? 'exited' : (reply?.value ?? 'no answer')}`);
      return { dirs, root: dirs.mnt };
    },
    pids: () => (host?.pid !== undefined && isAlive(host.pid) ? [host.pid] : []),
    teardown: async () => {
      const notes = (await Promise.all(made.map((d) => unmountFuse(d.mnt)))).flat();
      const pid = host?.pid;
      host?.stdin.end();
      for (let i = 0; i < 100 && pid !== undefined && isAlive(pid); i++) await sleep(100);
      if (pid !== undefined && isAlive(pid)) {
        notes.push(`stratafs server ${pid} still running 10 s after its unmounts: killed`);
        process.kill(pid, 'SIGKILL');
      }
      return notes;
    },
  };
}

export function makeSetup(name: SharingName, repoRoot: string): Setup {
  switch (name) {
    case 'kernel':
    case 'fuse-overlayfs':
    case 'stratafs':
      return overlaySetup(name, repoRoot);
    case 'full-copy':
    case 'reflink-copy':
      return copySetup(name);
    case 'stratafs-daemon':
      return serverSetup();
  }
}
