/**
 * How long `ctr run --rm` takes to a container's first output with the stratafs
 * snapshotter, against containerd's built-in overlayfs snapshotter, side by side on one
 * containerd (never part of the test suite; asserts nothing).
 *
 *   npm run build && npm run bench:ctr -- [--reps=N] [--scratch=DIR]
 *
 * containerd 1.7 and ctr come from Debian trixie (scripts/trixie-clients.sh, the same
 * private prefix the tests use). The image has two layers (a busybox rootfs and one file
 * more), so the stratafs container gets a fuse3.stratafs mount (a one-layer image would
 * be a plain bind). After one warm-up run per snapshotter (it also unpacks the image),
 * the repetitions alternate the snapshotters. "first output" is the time from starting
 * ctr to the first byte the container prints; "whole run" includes the task's and the
 * container's removal.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describeFailure, mountsUnder, ok, run, type ChildResult } from './lib/proc';
import { median } from './lib/stats';

const repoRoot = path.resolve(__dirname, '..', '..');
const IMAGE = 'docker.io/stratafs-bench/busybox:2';
const TIMEOUT_MS = 120_000;
const SNAPSHOTTERS = ['stratafs', 'overlayfs'];
const USAGE = `usage: npm run bench:ctr -- [OPTIONS]
  --reps=N         timed runs per snapshotter, alternated (default 10)
  --scratch=DIR    parent of the scratch directory (default /var/tmp)`;

async function must(what: string, p: Promise<ChildResult>): Promise<ChildResult> {
  const r = await p;
  if (!ok(r)) throw new Error(describeFailure(what, r));
  return r;
}

/** A docker-archive image of two layers: busybox (sh, echo, true) and one more file. */
async function imageArchive(dir: string): Promise<string> {
  const l0 = path.join(dir, 'l0');
  fs.mkdirSync(path.join(l0, 'bin'), { recursive: true });
  fs.copyFileSync('/bin/busybox', path.join(l0, 'bin', 'busybox'));
  fs.chmodSync(path.join(l0, 'bin', 'busybox'), 0o755);
  for (const applet of ['sh', 'echo', 'true', 'cat']) fs.symlinkSync('busybox', path.join(l0, 'bin', applet));
  const l1 = path.join(dir, 'l1');
  fs.mkdirSync(path.join(l1, 'etc'), { recursive: true });
  fs.writeFileSync(path.join(l1, 'etc', 'bench'), 'ready\n');
  const content = path.join(dir, 'archive');
  fs.mkdirSync(content);
  const diffIds: string[] = [];
  for (const l of ['l0', 'l1']) {
    await must(`tar ${l}`, run('tar', ['--numeric-owner', '-C', path.join(dir, l), '-cf', path.join(content, `${l}.tar`), '.'], { timeoutMs: TIMEOUT_MS }));
    diffIds.push(`sha256:${createHash('sha256').update(fs.readFileSync(path.join(content, `${l}.tar`))).digest('hex')}`);
  }
  const config = JSON.stringify({ architecture: 'amd64', os: 'linux', config: { Cmd: ['/bin/sh'] }, rootfs: { type: 'layers', diff_ids: diffIds } });
  const configName = `${createHash('sha256').update(config).digest('hex')}.json`;
  fs.writeFileSync(path.join(content, configName), config);
  fs.writeFileSync(path.join(content, 'manifest.json'), JSON.stringify([{ Config: configName, RepoTags: [IMAGE], Layers: ['l0.tar', 'l1.tar'] }]));
  const archive = path.join(dir, 'image.tar');
  await must('tar image', run('tar', ['-C', content, '-cf', archive, 'manifest.json', configName, 'l0.tar', 'l1.tar'], { timeoutMs: TIMEOUT_MS }));
  return archive;
}

async function waitFor(cond: () => Promise<boolean> | boolean, what: string, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`${what} did not come up`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** one `ctr run --rm`: seconds to the first stdout byte and to the end */
function timedRun(ctr: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ first: number; total: number }> {
  return new Promise((resolve, reject) => {
    const start = process.hrtime.bigint();
    const secs = (): number => Number(process.hrtime.bigint() - start) / 1e9;
    let first: number | undefined;
    let err = '';
    const child = spawn(ctr, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    const timer = setTimeout(() => child.kill('SIGKILL'), TIMEOUT_MS);
    child.stdout.on('data', () => (first ??= secs()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      if (code !== 0 || first === undefined) reject(new Error(`ctr ${args.join(' ')}: exit ${code}: ${err.trim()}`));
      else resolve({ first, total: secs() });
    });
  });
}

async function stop(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await exited;
}

async function main(argv: string[]): Promise<void> {
  let reps = 10;
  let scratch = '/var/tmp';
  for (const arg of argv) {
    const [k, v = ''] = arg.split(/=(.*)/s);
    if (k === '--help') {
      console.log(USAGE);
      return;
    } else if (k === '--reps' && /^[1-9]\d*$/.test(v)) reps = Number(v);
    else if (k === '--scratch' && v) scratch = v;
    else throw new Error(`bad option ${arg} (--help lists them)`);
  }
  const prefix = (await must('trixie clients', run('bash', [path.join(repoRoot, 'scripts', 'trixie-clients.sh')], { timeoutMs: 600_000 }))).stdout.trim();
  fs.mkdirSync(scratch, { recursive: true });
  const dir = fs.mkdtempSync(path.join(scratch, 'sfctr-'));
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    PATH: [path.join(repoRoot, 'bin'), path.join(prefix, 'usr', 'bin'), path.join(prefix, 'usr', 'sbin'), path.dirname(process.execPath), '/usr/sbin', '/usr/bin', '/sbin', '/bin'].join(':'),
  };
  delete env.NODE_OPTIONS;
  const address = path.join(dir, 'c.sock');
  const snapSock = path.join(dir, 's.sock');
  const ctr = path.join(prefix, 'usr', 'bin', 'ctr');
  let snapshotter: ChildProcess | undefined;
  let containerd: ChildProcess | undefined;
  try {
    snapshotter = spawn(path.join(repoRoot, 'bin', 'stratafs'), ['snapshotter', '--address', snapSock, '--root', path.join(dir, 'snap')], { env, stdio: 'ignore' });
    await waitFor(() => fs.existsSync(snapSock), 'the snapshotter');
    const config = path.join(dir, 'containerd.toml');
    fs.writeFileSync(config, `version = 2\nroot = ${JSON.stringify(path.join(dir, 'root'))}\nstate = ${JSON.stringify(path.join(dir, 'state'))}\n` +
      `disabled_plugins = ["io.containerd.grpc.v1.cri"]\n[grpc]\n  address = ${JSON.stringify(address)}\n[ttrpc]\n  address = ${JSON.stringify(`${address}.ttrpc`)}\n` +
      `[proxy_plugins]\n  [proxy_plugins.stratafs]\n    type = "snapshot"\n    address = ${JSON.stringify(snapSock)}\n`);
    containerd = spawn(path.join(prefix, 'usr', 'bin', 'containerd'), ['--config', config], { env, stdio: 'ignore' });
    await waitFor(async () => ok(await run(ctr, ['-a', address, 'version'], { env, timeoutMs: 10_000 })), 'containerd');
    await must('ctr import', run(ctr, ['-a', address, 'images', 'import', '--snapshotter', 'stratafs', await imageArchive(dir)], { env, timeoutMs: TIMEOUT_MS }));
    const args = (sn: string, id: string): string[] => ['-a', address, 'run', '--rm', '--snapshotter', sn, IMAGE, id, '/bin/cat', '/etc/bench'];
    for (const sn of SNAPSHOTTERS) await timedRun(ctr, args(sn, `warm-${sn}`), env);
    const times = SNAPSHOTTERS.map(() => ({ first: [] as number[], total: [] as number[] }));
    for (let rep = 0; rep < reps; rep++) {
      const order = rep % 2 === 0 ? [0, 1] : [1, 0];
      for (const i of order) {
        const r = await timedRun(ctr, args(SNAPSHOTTERS[i], `b${rep}-${i}`), env);
        times[i].first.push(r.first);
        times[i].total.push(r.total);
      }
    }
    console.log(`ctr run --rm IMG cat (two-layer busybox image), ${reps} runs each, alternated (seconds)`);
    console.log(`${'snapshotter'.padEnd(12)}${'first output'.padStart(14)}${'best'.padStart(8)}${'whole run'.padStart(11)}${'best'.padStart(8)}`);
    for (const [i, sn] of SNAPSHOTTERS.entries()) {
      const f = times[i].first;
      const w = times[i].total;
      console.log(`${sn.padEnd(12)}${(median(f) ?? 0).toFixed(3).padStart(14)}${Math.min(...f).toFixed(3).padStart(8)}${(median(w) ?? 0).toFixed(3).padStart(11)}${Math.min(...w).toFixed(3).padStart(8)}`);
    }
    console.log(`stratafs / overlayfs, first output: ${((median(times[0].first) ?? 0) / (median(times[1].first) ?? 1)).toFixed(2)}`);
  } finally {
    if (containerd) {
      await run(ctr, ['-a', address, 'images', 'rm', '--sync', IMAGE], { env, timeoutMs: TIMEOUT_MS });
      await stop(containerd);
    }
    await stop(snapshotter);
    for (const m of mountsUnder(dir)) await run('umount', ['-l', m.mountpoint], { timeoutMs: 30_000 });
    if (mountsUnder(dir).length === 0) fs.rmSync(dir, { recursive: true, force: true });
    else console.error(`bench:ctr: not removing ${dir}: still mounted`);
  }
}

main(process.argv.slice(2)).catch((e: unknown) => {
  console.error(`bench:ctr: ${e instanceof Error ? e.message : String(e)}`);
  process.exitCode = 1;
});
