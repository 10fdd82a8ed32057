/**
 * `npm start`: mounts the bundled example layers (fixtures/layers) with stratafs and
 * shows, step by step, what the union does: lookup across layers, a whiteout, a copy-up.
 * Every command runs as a child process against the mount (the daemon is its own
 * process, detached as `stratafs` always does), and the mount is undone at the end.
 *
 *   node dist/src/cli/demo.js [--keep]    (--keep leaves the mount up and prints its paths)
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const BIN = path.join(ROOT, 'bin', 'stratafs');

const bold = (s: string): string => (process.stdout.isTTY ? `\x1b[1m${s}\x1b[0m` : s);

function show(title: string): void {
  process.stdout.write(`\n${bold(`== ${title}`)}\n`);
}

/** Runs a shell command, printing it and its output the way a terminal would. */
function $(cmd: string, shown: string = cmd): string {
  process.stdout.write(`$ ${shown}\n`);
  const r = spawnSync('/bin/sh', ['-c', cmd], { encoding: 'utf8' });
  const out = (r.stdout ?? '') + (r.stderr ?? '');
  process.stdout.write(out.endsWith('\n') || out === '' ? out : `${out}\n`);
  if (r.status !== 0) throw new Error(`demo step failed (exit ${r.status}): ${shown}`);
  return r.stdout;
}

function isMounted(mnt: string): boolean {
  return fs.readFileSync('/proc/mounts', 'utf8').split('\n').some((l) => l.split(' ')[1] === mnt);
}

function main(): void {
  if (process.getuid?.() !== 0) {
    process.stderr.write('stratafs demo: run as root (it mounts, and the example layers hold whiteout device nodes)\n');
    process.exitCode = 1;
    return;
  }
  const keep = process.argv.includes('--keep');
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'stratafs-demo-'));
  const layers = path.join(work, 'layers');
  const upper = path.join(work, 'upper');
  const wd = path.join(work, 'work');
  const mnt = path.join(work, 'merged');
  for (const d of [upper, wd, mnt]) fs.mkdirSync(d);
  const built = spawnSync('sh', [path.join(ROOT, 'fixtures', 'layers', 'build.sh'), layers], { encoding: 'utf8' });
  if (built.status !== 0) {
    process.stderr.write(`stratafs demo: cannot build the example layers: ${built.stderr.trim().split('\n')[0]}\n`);
    fs.rmSync(work, { recursive: true, force: true });
    process.exitCode = 1;
    return;
  }
  const [top, mid, base] = ['top', 'mid', 'base'].map((l) => path.join(layers, l));
  // show paths relative to the demo dir: shorter and easier to read
  const short = (s: string): string => s.split(`${work}/`).join('');

  let failed = false;
  try {
    show('three read-only layers (top first) and an empty upper layer');
    $(`cd ${work} && ls layers/top/etc layers/mid/etc layers/base/etc`, 'ls layers/top/etc layers/mid/etc layers/base/etc');
    const opts = `lowerdir=${top}:${mid}:${base},upperdir=${upper},workdir=${wd}`;
    $(`${BIN} -o ${opts} ${mnt}`, short(`stratafs -o ${opts} ${mnt}`));
    $(`grep ' ${mnt} ' /proc/mounts`, `grep merged /proc/mounts`);

    show('union lookup: one directory made of all layers; upper layers shadow lower ones');
    $(`ls ${mnt}/etc`, 'ls merged/etc');
    $(`cat ${mnt}/etc/issue`, 'cat merged/etc/issue            # base has one too; mid wins');
    $(`cat ${layers}/base/etc/issue`, 'cat layers/base/etc/issue');
    $(`ls -l ${mid}/etc/hostname | sed 's#${work}/##'`, 'ls -l layers/mid/etc/hostname    # a whiteout in mid hides base\'s hostname');

    show('whiteout: deleting a file that lives in a read-only layer');
    $(`rm ${mnt}/etc/os-release`, 'rm merged/etc/os-release');
    $(`ls ${mnt}/etc`, 'ls merged/etc');
    $(`ls -l ${upper}/etc | sed 's#${work}/##'`, 'ls -l upper/etc                  # a 0/0 character device hides it');
    $(`ls ${base}/etc/os-release | sed 's#${work}/##'`, 'ls layers/base/etc/os-release    # the layer itself is untouched');

    show('copy-up: the first write copies the file into the upper layer');
    $(`echo 'changed in the container' >> ${mnt}/etc/motd`, "echo 'changed in the container' >> merged/etc/motd");
    $(`cat ${mnt}/etc/motd`, 'cat merged/etc/motd');
    $(`cat ${upper}/etc/motd`, 'cat upper/etc/motd');
    $(`cat ${top}/etc/motd`, 'cat layers/top/etc/motd          # the original is unchanged');
    $(`find ${upper} | sed 's#${work}/##' | sort`, 'find upper                       # only what changed');
  } catch (e) {
    failed = true;
    process.stderr.write(`${(e as Error).message}\n`);
  } finally {
    if (keep && !failed) {
      process.stdout.write(`\nleft mounted: ${mnt}\nunmount with: fusermount3 -u ${mnt} && rm -rf ${work}\n`);
    } else {
      show('unmount');
      if (isMounted(mnt)) $(`umount ${mnt}`, 'umount merged');
      for (let i = 0; i < 50 && isMounted(mnt); i++) spawnSync('sleep', ['0.1']);
      if (isMounted(mnt)) spawnSync('umount', ['-l', mnt]);
      fs.rmSync(work, { recursive: true, force: true });
    }
  }
  process.exitCode = failed ? 1 : 0;
}

main();
