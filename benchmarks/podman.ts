/**
 * How long `podman run --rm --network none IMG true` takes with stratafs as the overlay
 * driver's mount_program, against fuse-overlayfs in the same place (never part of the
 * test suite; asserts nothing).
 *
 *   npm run build && npm run bench:podman -- [--reps=N] [--scratch=DIR] [--stratafs=PATH]
 *
 * Three setups: stratafs with a daemon per mount (plain mount_program), stratafs
 * through one running `stratafs daemon --socket SOCK` (the same mount_program plus
 * `mountopt = "server=SOCK"`: the mount costs no Node.js start), and fuse-overlayfs.
 * Each gets its own podman store (storage.conf + containers.conf in a scratch dir,
 * selected with CONTAINERS_STORAGE_CONF / CONTAINERS_CONF) holding the same imported
 * busybox image. After one warm-up run per store, the repetitions rotate the order of
 * the programs; the table shows median and best times and the ratios of the medians to
 * fuse-overlayfs. The target is a ratio of at most 1.5: what decides it is how soon the
 * mount program exits with the mount ready and its stderr released.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describeFailure, mounts, ok, run, type ChildResult } from './lib/proc';
import { median } from './lib/stats';

const repoRoot = path.resolve(__dirname, '..', '..');
const IMAGE = 'localhost/stratafs-bench/busybox:1';
const TIMEOUT_MS = 120_000;
const TARGET_RATIO = 1.5;
const USAGE = `usage: npm run bench:podman -- [OPTIONS]
  --reps=N         timed runs per mount program, alternated (default 10)
  --scratch=DIR    parent of the scratch directory (default /var/tmp)
  --stratafs=PATH  the stratafs executable (default bin/stratafs of this checkout)
  --fuse-overlayfs=PATH  (default: found on PATH)
  --daemon=off     leave out stratafs through a running daemon (mountopt server=)`;

interface Program {
  name: string;
  path: string;
  /** a `stratafs daemon` serves the mounts: mountopt = "server=SOCKET" */
  daemon?: boolean;
}

interface Options {
  reps: number;
  scratch: string;
  programs: Program[];
}

function parseArgs(argv: string[]): Options | undefined {
  const o = { reps: 10, scratch: '/var/tmp', stratafs: path.join(repoRoot, 'bin', 'stratafs'), fuseOverlayfs: '', daemon: true };
  for (const arg of argv) {
    const [k, v = ''] = arg.split(/=(.*)/s);
    if (k === '--help') return undefined;
    else if (k === '--reps' && /^[1-9]\d*$/.test(v)) o.reps = Number(v);
    else if (k === '--scratch' && v) o.scratch = v;
    else if (k === '--stratafs' && v) o.stratafs = path.resolve(v);
    else if (k === '--fuse-overlayfs' && v) o.fuseOverlayfs = path.resolve(v);
    else if (k === '--daemon' && (v === 'on' || v === 'off')) o.daemon = v === 'on';
    else throw new Error(`bad option ${arg} (--help lists them)`);
  }
  const fuseOverlayfs = o.fuseOverlayfs || findOnPath('fuse-overlayfs');
  if (!fuseOverlayfs) throw new Error('fuse-overlayfs not found (apt-get install fuse-overlayfs)');
  const programs: Program[] = [{ name: 'stratafs', path: o.stratafs }, { name: 'fuse-overlayfs', path: fuseOverlayfs }];
  if (o.daemon) programs.push({ name: 'stratafs (daemon)', path: o.stratafs, daemon: true });
  return { reps: o.reps, scratch: o.scratch, programs };
}

function findOnPath(name: string): string {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    const p = path.join(dir, name);
    if (dir && fs.existsSync(p)) return p;
  }
  return '';
}

/** A podman store using PROGRAM as mount_program; returns its environment. */
function writeStore(dir: string, program: string, mountopt?: string): NodeJS.ProcessEnv {
  for (const d of ['root', 'run', 'tmp', 'libpod']) fs.mkdirSync(path.join(dir, d), { recursive: true });
  const q = (s: string): string => JSON.stringify(s);
  const storage = path.join(dir, 'storage.conf');
  const containers = path.join(dir, 'containers.conf');
  fs.writeFileSync(storage, `[storage]\ndriver = "overlay"\ngraphroot = ${q(path.join(dir, 'root'))}\nrunroot = ${q(path.join(dir, 'run'))}\n[storage.options.overlay]\nmount_program = ${q(program)}\n${mountopt ? `mountopt = ${q(mountopt)}\n` : ''}`);
  // runc fails with these machines' default rlimits
  fs.writeFileSync(containers, `[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]\n[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "none"\ntmp_dir = ${q(path.join(dir, 'libpod'))}\n`);
  return { ...process.env, CONTAINERS_STORAGE_CONF: storage, CONTAINERS_CONF: containers, TMPDIR: path.join(dir, 'tmp') };
}

/** A busybox rootfs tarball (sh and true are all `podman run IMG true` needs). */
async function rootfsTar(dir: string): Promise<string> {
  const root = path.join(dir, 'rootfs');
  fs.mkdirSync(path.join(root, 'bin'), { recursive: true });
  fs.copyFileSync('/bin/busybox', path.join(root, 'bin', 'busybox'));
  fs.chmodSync(path.join(root, 'bin', 'busybox'), 0o755);
  for (const applet of ['sh', 'true', 'ls']) fs.symlinkSync('busybox', path.join(root, 'bin', applet));
  const tar = path.join(dir, 'rootfs.tar');
  await must(`tar ${tar}`, run('tar', ['-C', root, '-cf', tar, '.'], { timeoutMs: TIMEOUT_MS }));
  return tar;
}

async function must(what: string, p: Promise<ChildResult>): Promise<ChildResult> {
  const r = await p;
  if (!ok(r)) throw new Error(describeFailure(what, r));
  return r;
}

/** `stratafs daemon --socket SOCK`, started from STRATAFS (bin/stratafs); resolves once it listens. */
async function startDaemon(stratafs: string, sock: string): Promise<ChildProcess> {
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
async function stopDaemon(daemon: ChildProcess): Promise<void> {
  if (daemon.exitCode !== null || daemon.signalCode !== null) return;
  const exited = new Promise((r) => daemon.once('exit', r));
  daemon.kill('SIGTERM');
  await exited;
}

const podman = (env: NodeJS.ProcessEnv, args: string[]): Promise<ChildResult> => run('podman', args, { env, timeoutMs: TIMEOUT_MS });

async function cleanup(dir: string, envs: NodeJS.ProcessEnv[], daemon?: ChildProcess): Promise<void> {
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

async function main(argv: string[]): Promise<void> {
  const opts = parseArgs(argv);
  if (!opts) {
    console.log(USAGE);
    return;
  }
  fs.mkdirSync(opts.scratch, { recursive: true });
  // Short paths on purpose: with a store under a longer path (about 45 characters here)
  // podman 4.3 waits 20 s for every container's exit, whatever the mount program.
  const dir = fs.mkdtempSync(path.join(opts.scratch, 'sfpod-'));
  const sock = path.join(dir, 'd.sock');
  const envs = opts.programs.map((p, i) => writeStore(path.join(dir, String(i)), p.path, p.daemon ? `server=${sock}` : undefined));
  let daemon: ChildProcess | undefined;
  try {
    if (opts.programs.some((p) => p.daemon)) daemon = await startDaemon(opts.programs[0].path, sock);
    const tar = await rootfsTar(dir);
    const runArgs = ['run', '--rm', '--network', 'none', '--pull', 'never', IMAGE, 'true'];
    for (const [i, env] of envs.entries()) {
      await must('podman import', podman(env, ['import', '--quiet', tar, IMAGE]));
      await must(`warm-up run (${opts.programs[i].name})`, podman(env, runArgs));
    }
    const times: number[][] = opts.programs.map(() => []);
    for (let rep = 0; rep < opts.reps; rep++) {
      // rotate the order, so that no program always runs first or after the same one
      const n = opts.programs.length;
      const order = opts.programs.map((_p, k) => (k + rep) % n);
      if (Math.floor(rep / n) % 2 === 1) order.reverse();
      for (const i of order) {
        const r = await must(`podman run (${opts.programs[i].name})`, podman(envs[i], runArgs));
        times[i].push(r.seconds);
      }
    }
    console.log(`podman run --rm --network none IMG true, ${opts.reps} runs each, alternated (seconds)`);
    console.log(`${'mount_program'.padEnd(20)}${'median'.padStart(8)}${'best'.padStart(8)}`);
    for (const [i, p] of opts.programs.entries()) {
      console.log(`${p.name.padEnd(20)}${(median(times[i]) ?? 0).toFixed(3).padStart(8)}${Math.min(...times[i]).toFixed(3).padStart(8)}`);
    }
    const base = median(times[1]) ?? 1;
    for (const [i, p] of opts.programs.entries()) {
      if (i === 1) continue;
      console.log(`${p.name} / fuse-overlayfs = ${((median(times[i]) ?? 0) / base).toFixed(2)} (target: at most ${TARGET_RATIO})`);
    }
  } finally {
    await cleanup(dir, envs, daemon);
  }
}

main(process.argv.slice(2)).catch((e: unknown) => {
  console.error(`bench:podman: ${e instanceof Error ? e.message : String(e)}`);
  process.exitCode = 1;
});
