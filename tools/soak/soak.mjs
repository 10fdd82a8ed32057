// Soak: several workers doing mixed operations through one stratafs mount for N
// minutes, the same operations replayed on kernel overlayfs (the oracle) over the same
// lowers, outcomes and merged trees compared; the daemon's RSS and open fds sampled
// throughout, and once more after the run, right after a cache drop (the kernel then
// FORGETs the inodes it held) and after an idle settle period (by then the daemon has
// closed the directory fds it cached and given back what it can).
//
//   npm run soak -- [--minutes N] [--workers N] [--seed N] [--settle SECONDS] [--keep]
//
// Exit status 0 when nothing diverged. Run as root (mounts, drop_caches). Everything
// lives in /tmp/stratafs-soak-XXXXXX, unmounted and removed at the end (--keep leaves
// the directories for a look).
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import { join, resolve } from 'node:path';
import { snapshot } from '../../test/differential/snapshot.mjs';
import { anonRegions, daemonStats, describe, sample } from './memory.mjs';

const ROOT = resolve(import.meta.dirname, '..', '..');
// the Node.js entry of the command (bin/stratafs.js where bin/stratafs is a shell launcher)
const BIN = ['stratafs.js', 'stratafs'].map((n) => join(ROOT, 'bin', n)).find((p) => fs.existsSync(p));
const WORKER = join(import.meta.dirname, 'worker.mjs');

function parse(argv) {
  const o = { minutes: 1, workers: 4, seed: Date.now() % 1_000_000, settle: 60, keep: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const num = () => {
      const v = Number(argv[++i]);
      if (!Number.isFinite(v) || v <= 0) throw new Error(`${a} needs a positive number`);
      return v;
    };
    if (a === '--minutes') o.minutes = num();
    else if (a === '--workers') o.workers = Math.floor(num());
    else if (a === '--seed') o.seed = Math.floor(num());
    else if (a === '--settle') o.settle = num();
    else if (a === '--keep') o.keep = true;
    else throw new Error(`unknown argument ${a} (--minutes N, --workers N, --seed N, --settle SECONDS, --keep)`);
  }
  return o;
}

const sh = (cmd, args) => execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** The lower layers: per worker a dir with files, subdirs, a hard link and a symlink. */
function makeLowers(root, workers) {
  const base = join(root, 'base');
  const top = join(root, 'top');
  for (let w = 0; w < workers; w++) {
    const d = join(base, `w${w}`);
    fs.mkdirSync(join(d, 'd0'), { recursive: true });
    fs.mkdirSync(join(d, 'd1', 'd2'), { recursive: true });
    for (const [i, n] of ['a', 'b', 'c', 'd0/a', 'd0/b', 'd1/c', 'd1/d2/e'].entries()) {
      fs.writeFileSync(join(d, n), Buffer.alloc(1000 * (i + 1) * (w + 1), `${w}${n}`));
    }
    fs.linkSync(join(d, 'a'), join(d, 'h'));
    fs.symlinkSync('b', join(d, 'g'));
    const t = join(top, `w${w}`);
    fs.mkdirSync(join(t, 'd0'), { recursive: true });
    fs.writeFileSync(join(t, 'd'), `top ${w}\n`);
    fs.writeFileSync(join(t, 'c'), `shadows c ${w}\n`);
    fs.writeFileSync(join(t, 'd0', 'f'), `top d0/f ${w}\n`);
    sh('mknod', [join(t, 'd0', 'b'), 'c', '0', '0']); // whiteout of base's d0/b
  }
  return [top, base];
}

function mounted(mnt) {
  return fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').some((l) => l.split(' ')[4] === mnt);
}

function child(args) {
  return new Promise((resolveRun, reject) => {
    const c = spawn(process.execPath, [WORKER, ...args], { stdio: ['ignore', 'inherit', 'inherit'] });
    c.on('error', reject);
    c.on('exit', (code) => (code === 0 ? resolveRun() : reject(new Error(`worker ${args.join(' ')}: exit ${code}`))));
  });
}

function unmount(mnt) {
  for (const args of [['-u', mnt], ['-u', '-z', mnt]]) {
    try {
      sh('fusermount3', args);
      return;
    } catch {
      // try the next way
    }
  }
  try { sh('umount', ['-l', mnt]); } catch { /* not mounted */ }
}

function compareTrees(a, b) {
  const diffs = [];
  const paths = new Set([...Object.keys(a.entries), ...Object.keys(b.entries)]);
  for (const p of [...paths].sort()) {
    const x = a.entries[p];
    const y = b.entries[p];
    if (!x || !y) { diffs.push(`${p}: ${x ? 'only in stratafs' : 'only in the oracle'}`); continue; }
    for (const f of ['type', 'mode', 'uid', 'gid', 'nlink', 'size', 'sha256', 'target', 'rdev', 'linkGroup']) {
      if (JSON.stringify(x[f]) !== JSON.stringify(y[f])) diffs.push(`${p}: ${f} ${JSON.stringify(x[f])} vs ${JSON.stringify(y[f])}`);
    }
  }
  return diffs;
}

async function main() {
  const o = parse(process.argv.slice(2));
  const root = fs.mkdtempSync('/tmp/stratafs-soak-');
  const dirs = Object.fromEntries(['s-upper', 's-work', 's-mnt', 'k-upper', 'k-work', 'k-mnt', 'logs'].map((n) => [n, join(root, n)]));
  for (const d of Object.values(dirs)) fs.mkdirSync(d);
  const lowers = makeLowers(root, o.workers);
  console.log(`soak: ${o.workers} workers, ${o.minutes} min, seed ${o.seed}, in ${root}`);
  let failed = false;
  try {
    const env = { ...process.env };
    delete env.NODE_OPTIONS;
    // in the foreground, its stderr in a file: SIGUSR2 makes it write a line of stats
    // there (after a full garbage collection: --expose-gc)
    const daemonLog = join(dirs.logs, 'daemon.log');
    const logFd = fs.openSync(daemonLog, 'a');
    const daemon = spawn(process.execPath, ['--expose-gc', BIN, '-f', '-o', `lowerdir=${lowers.join(':')},upperdir=${dirs['s-upper']},workdir=${dirs['s-work']}`, dirs['s-mnt']],
      { stdio: ['ignore', 'ignore', logFd], env, detached: true });
    fs.closeSync(logFd);
    daemon.unref();
    const pid = daemon.pid;
    for (let i = 0; i < 300 && !mounted(dirs['s-mnt']); i++) await sleep(100);
    if (!mounted(dirs['s-mnt'])) throw new Error(`stratafs did not mount: ${fs.readFileSync(daemonLog, 'utf8')}`);
    // the kernel has the mount before the daemon serves it and installs its SIGUSR2
    // handler (until then the signal would end it): wait for an answer through the mount
    fs.statSync(join(dirs['s-mnt'], 'w0'));
    await sleep(200);
    const stats = () => daemonStats(pid, daemonLog);
    const start = sample(pid);
    const startRegions = anonRegions(pid);
    const startStats = await stats();
    let peak = { ...start };
    const t0 = Date.now();
    const perMinute = [];
    const timer = setInterval(() => {
      try {
        const s = sample(pid);
        peak = { rssMiB: Math.max(peak.rssMiB, s.rssMiB), fds: Math.max(peak.fds, s.fds) };
        const minute = Math.floor((Date.now() - t0) / 60_000);
        if (minute >= 1 && perMinute.length < minute) perMinute.push(`${minute}:${s.rssMiB}/${s.anonMiB}/${s.fds}`);
      } catch {
        // the daemon is gone: reported below
      }
    }, 1000);
    const deadline = Date.now() + o.minutes * 60_000;
    const logs = [];
    await Promise.all(Array.from({ length: o.workers }, (_, w) => {
      const log = join(dirs.logs, `w${w}.jsonl`);
      logs.push(log);
      return child(['run', dirs['s-mnt'], `w${w}`, String(o.seed * 100 + w), String(deadline), log]);
    }));
    clearInterval(timer);
    const ops = logs.reduce((n, l) => n + fs.readFileSync(l, 'utf8').trim().split('\n').length - 1, 0);
    const sTree = snapshot(dirs['s-mnt'], 'merged');
    // after the walk of the whole tree: the daemon's cache of directory fds (an LRU
    // bounded by the fd limit, layers.ts) then holds one per directory and layer
    const afterRun = sample(pid);
    const afterRunRegions = anonRegions(pid);
    const afterRunStats = await stats();
    const nDirs = Object.values(sTree.entries).filter((e) => e.type === 'dir').length;
    // forget: drop the kernel's dentries and inodes, so it sends FORGET for every node
    fs.writeFileSync('/proc/sys/vm/drop_caches', '3');
    const dropped = Date.now();
    await sleep(5000);
    const afterDrop = sample(pid);
    // then the daemon sits idle for the settle period and is sampled before it is asked
    // for stats (which collect); once more after the oracle's replay (which does not
    // touch it), to see whether an idle daemon stays where it settled
    const idleSample = async () => {
      const s = sample(pid);
      const regions = anonRegions(pid);
      return { s, regions, stats: await stats(), after: Math.round((Date.now() - dropped) / 1000) };
    };
    await sleep(Math.max(0, dropped + o.settle * 1000 - Date.now()));
    const afterSettle = await idleSample();

    sh('mount', ['-t', 'overlay', 'overlay', '-o',
      `lowerdir=${lowers.join(':')},upperdir=${dirs['k-upper']},workdir=${dirs['k-work']},redirect_dir=on,index=off`, dirs['k-mnt']]);
    const replays = await Promise.all(logs.map(async (log, w) => {
      const out = join(dirs.logs, `w${w}.replay.json`);
      await child(['replay', dirs['k-mnt'], log, out]);
      return JSON.parse(fs.readFileSync(out, 'utf8'));
    }));
    const kTree = snapshot(dirs['k-mnt'], 'merged');
    const outcomeDiffs = replays.reduce((n, r) => n + r.ndiffs, 0);
    const treeDiffs = compareTrees(sTree, kTree);
    const leaks = sTree.leaks.length;
    const afterReplay = await idleSample();

    console.log(`ops: ${ops} (${Math.round(ops / (o.minutes * 60))}/s) by ${o.workers} workers`);
    console.log(`outcomes differing from kernel overlayfs: ${outcomeDiffs}`);
    for (const r of replays) for (const d of r.diffs.slice(0, 5)) console.log(`  ${r.dir} #${d.i} ${JSON.stringify(d.op)}: stratafs ${d.stratafs}, oracle ${d.oracle}`);
    console.log(`merged trees: ${Object.keys(sTree.entries).length} entries, ${treeDiffs.length} differences, ${leaks} private xattrs visible`);
    for (const d of treeDiffs.slice(0, 20)) console.log(`  ${d}`);
    console.log(`daemon (V8 figures after a full collection, asked for with SIGUSR2; ${nDirs} directories in the merged tree):`);
    console.log(describe('start', start, startStats, startRegions));
    if (perMinute.length > 0) console.log(`  each minute (RSS MiB/anon MiB/fds): ${perMinute.join(' ')}`);
    console.log(`  peak: RSS ${peak.rssMiB} MiB, ${peak.fds} fds`);
    console.log(describe('end of run, after a walk of the tree', afterRun, afterRunStats, afterRunRegions));
    console.log(describe('5 s after drop_caches', afterDrop));
    for (const x of [afterSettle, afterReplay]) {
      console.log(describe(`${x.after} s after drop_caches, idle`, x.s, x.stats, x.regions));
      console.log(`  then after the collection: RSS ${x.stats.rssMiB} MiB`);
    }
    failed = outcomeDiffs > 0 || treeDiffs.length > 0 || leaks > 0;
    console.log(failed ? 'soak: DIVERGED' : 'soak: no divergence');
  } catch (e) {
    console.error(`soak: ${e.message}`);
    failed = true;
  } finally {
    unmount(dirs['s-mnt']);
    try { sh('umount', [dirs['k-mnt']]); } catch { /* not mounted */ }
    if (!o.keep) fs.rmSync(root, { recursive: true, force: true });
  }
  process.exitCode = failed ? 1 : 0;
}

main();
