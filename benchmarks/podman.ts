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
 *
 * `--workload=build` times `podman build` instead (benchmarks/lib/podman-build.ts), with
 * podman's kernel overlay driver as a fourth setup.
 */
import type { ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describeFailure, ok, run, type ChildResult } from './lib/proc';
import { cleanup, findOnPath, podman, startDaemon, TIMEOUT_MS, writeStore } from './lib/podman-store';
import { runBuild } from './lib/podman-build';
import { DEFAULT_ROOTFS_TAR } from './lib/rootfs';
import { median } from './lib/stats';

const repoRoot = path.resolve(__dirname, '..', '..');
const IMAGE = 'localhost/stratafs-bench/busybox:1';
const TARGET_RATIO = 1.5;
const USAGE = `usage: npm run bench:podman -- [OPTIONS]
  --reps=N         timed runs per mount program, alternated (default 10)
  --scratch=DIR    parent of the scratch directory (default /var/tmp)
  --stratafs=PATH  the stratafs executable (default bin/stratafs of this checkout)
  --fuse-overlayfs=PATH  (default: found on PATH)
  --daemon=off     leave out stratafs through a running daemon (mountopt server=)
  --workload=build podman build of a multi-step Containerfile over the Debian minbase
                   image instead (default reps 3; adds podman's kernel overlay driver)
  --rootfs=TAR     the base image of --workload=build (default ${DEFAULT_ROOTFS_TAR})`;

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
  build: boolean;
  rootfs: string;
}

function parseArgs(argv: string[]): Options | undefined {
  const o = {
    reps: 0, scratch: '/var/tmp', stratafs: path.join(repoRoot, 'bin', 'stratafs'), fuseOverlayfs: '', daemon: true, build: false,
    rootfs: DEFAULT_ROOTFS_TAR,
  };
  for (const arg of argv) {
    const [k, v = ''] = arg.split(/=(.*)/s);
    if (k === '--help') return undefined;
    else if (k === '--reps' && /^[1-9]\d*$/.test(v)) o.reps = Number(v);
    else if (k === '--scratch' && v) o.scratch = v;
    else if (k === '--stratafs' && v) o.stratafs = path.resolve(v);
    else if (k === '--fuse-overlayfs' && v) o.fuseOverlayfs = path.resolve(v);
    else if (k === '--daemon' && (v === 'on' || v === 'off')) o.daemon = v === 'on';
    else if (k === '--workload' && (v === 'run' || v === 'build')) o.build = v === 'build';
    else if (k === '--rootfs' && v) o.rootfs = path.resolve(v);
    else throw new Error(`bad option ${arg} (--help lists them)`);
  }
  const fuseOverlayfs = o.fuseOverlayfs || findOnPath('fuse-overlayfs');
  if (!fuseOverlayfs) throw new Error('fuse-overlayfs not found (apt-get install fuse-overlayfs)');
  const programs: Program[] = [{ name: 'stratafs', path: o.stratafs }, { name: 'fuse-overlayfs', path: fuseOverlayfs }];
  if (o.daemon) programs.push({ name: 'stratafs (daemon)', path: o.stratafs, daemon: true });
  return { reps: o.reps || (o.build ? 3 : 10), scratch: o.scratch, programs, build: o.build, rootfs: o.rootfs };
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

async function main(argv: string[]): Promise<void> {
  const opts = parseArgs(argv);
  if (!opts) {
    console.log(USAGE);
    return;
  }
  if (opts.build) {
    const setups = [...opts.programs.map((p) => ({ name: p.name, program: p.path, daemon: p.daemon })), { name: 'kernel', program: '' }];
    await runBuild({ reps: opts.reps, scratch: opts.scratch, rootfs: opts.rootfs, setups }, (s) => console.error(s));
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
