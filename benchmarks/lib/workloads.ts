/**
 * The workloads. Each is shell text run by `sh -c` in a child process with $MNT set to
 * the target's merged directory; only `command` is timed. `check` (untimed, after the
 * command) prints something that must be the same on every target: a differing output
 * is reported, since a fast wrong answer is not a result.
 */
import * as path from 'node:path';
import type { Dataset } from './dataset';
import type { TargetName } from './options';
import { q } from './proc';

export interface WorkloadContext {
  ds: Dataset;
  target: TargetName;
  /** for `ownMounts` workloads: this run's scratch dir and the target's mount commands */
  own?: OwnMounts;
}

/** What a workload that mounts by itself gets (see `ownMounts`). */
export interface OwnMounts {
  /** a fresh directory of this run, removed afterwards */
  dir: string;
  /** the lowers of the split Debian rootfs (top first); set for `rootfs` workloads */
  rootfs?: string[];
  /** shell text: mount LOWERS (top first) at MNT with UPPER and WORK; returns once ready */
  mount(lowers: string[], upper: string, work: string, mnt: string): string;
  /** shell text: unmount MNT */
  unmount(mnt: string): string;
}

export interface Workload {
  name: string;
  description: string;
  /** sync and drop the page, dentry and inode caches right before the timed command */
  cold: boolean;
  /** shown, but not one of the project's goals: left out of the geometric means */
  diagnostic?: boolean;
  /** a program the workload needs; without it the workload is skipped */
  requires?: string;
  /**
   * the command mounts (and unmounts) by itself, through `own`, and so times start-up:
   * the target is not mounted for it, and targets without mount commands (native) skip it
   */
  ownMounts?: boolean;
  /** needs the split Debian rootfs (`--rootfs`); skipped with a note when there is none */
  rootfs?: boolean;
  /** untimed, before the (optional) cache drop */
  prepare?(c: WorkloadContext): string | undefined;
  command(c: WorkloadContext): string;
  check?(c: WorkloadContext): string;
  /** untimed, after the check; needed only where a target's changes outlive its run */
  cleanup?(c: WorkloadContext): string | undefined;
}

const FIND = 'cd "$MNT" && find . | wc -l';
const TAR = 'cd "$MNT" && tar cf - . | wc -c';
const READ_BIG = 'cat "$MNT/big.bin" > /dev/null';

/** Restores merged-relative paths of the native baseline from the layers (bottom first). */
function restoreNative(ds: Dataset, rel: string[]): string {
  const lines: string[] = [];
  for (const r of rel) {
    const dst = path.join(ds.native, r);
    lines.push(`rm -rf ${q(dst)}`);
    for (const lower of [...ds.lowers].reverse()) {
      const src = path.join(lower, r);
      lines.push(`if [ -e ${q(src)} ]; then mkdir -p ${q(dst)} && cp -a ${q(src)}/. ${q(dst)}/; fi`);
    }
  }
  return lines.join('\n');
}

const nativeOnly = (c: WorkloadContext, script: string): string | undefined => (c.target === 'native' ? script : undefined);

/** mount-cycle: mounts per run (the table shows the time of all of them) */
export const MOUNT_CYCLES = 20;

const ownOf = (c: WorkloadContext): OwnMounts => c.own ?? (() => { throw new Error(`target ${c.target} cannot mount by itself`); })();

/** the upper, work and mount dirs of one own mount under DIR */
function ownDirs(dir: string, name: string): { upper: string; work: string; mnt: string; make: string } {
  const [upper, work, mnt] = ['upper', 'work', 'mnt'].map((d) => path.join(dir, name, d)) as [string, string, string];
  return { upper, work, mnt, make: `mkdir -p ${q(upper)} ${q(work)} ${q(mnt)}` };
}

/** shell text unmounting what is still mounted of MNTS (after a failure) */
function unmountLeft(o: OwnMounts, mnts: string[]): string {
  return mnts.map((m) => `if mountpoint -q ${q(m)}; then ${o.unmount(m)}; fi`).join('\n');
}

const cycleDirs = (o: OwnMounts) => Array.from({ length: MOUNT_CYCLES }, (_, i) => ownDirs(o.dir, `cycle${i}`));

export const WORKLOADS: Workload[] = [
  {
    name: 'find-cold',
    description: 'find over the whole merged tree, caches dropped first (readdir + lookup of every entry)',
    cold: true,
    command: () => FIND,
  },
  {
    name: 'find-warm',
    description: 'find over the whole merged tree, after one untimed find on the same mount',
    cold: false,
    prepare: () => FIND,
    command: () => FIND,
  },
  {
    name: 'tar',
    description: 'tar of the whole merged tree into a pipe, caches dropped first (read every file)',
    cold: true,
    command: () => TAR,
  },
  {
    name: 'read-big-cold',
    description: 'cat the big lower file to /dev/null, caches dropped first',
    cold: true,
    command: () => READ_BIG,
  },
  {
    name: 'read-big-warm',
    description: 'cat the big lower file to /dev/null after one untimed read on the same mount',
    cold: false,
    prepare: () => READ_BIG,
    command: () => READ_BIG,
  },
  {
    name: 'ls-l',
    description: 'ls -l of a large lower dir (1000 entries by default), 10 times: readdir + stat of every entry',
    cold: false,
    command: () => 'cd "$MNT/list" && i=0; while [ $i -lt 10 ]; do ls -l > /dev/null; i=$((i+1)); done; ls -l | wc -l',
  },
  {
    name: 'append-small',
    description: 'append one line to each small lower file (copy-up of every one)',
    cold: false,
    command: () => 'cd "$MNT/small" && for f in *; do echo appended >> "$f"; done',
    check: () => 'cd "$MNT/small" && cat * | cksum',
    cleanup: (c) => nativeOnly(c, restoreNative(c.ds, ['small'])),
  },
  {
    name: 'append-big',
    description: 'append 1 byte to the big lower file (copy-up of a big file; lower file in page cache)',
    cold: false,
    prepare: (c) => `cat ${q(path.join(c.ds.lowers[1], 'big.bin'))} > /dev/null`,
    command: () => 'printf x >> "$MNT/big.bin"',
    check: () => 'stat -c %s "$MNT/big.bin"',
    cleanup: (c) => nativeOnly(c, `truncate -s ${c.ds.bigSize} ${q(path.join(c.ds.native, 'big.bin'))}`),
  },
  {
    name: 'untar',
    description: 'extract a tar of /usr/include into a new dir of the mount',
    cold: false,
    prepare: (c) => `cat ${q(c.ds.srcTar)} > /dev/null`,
    command: (c) => `mkdir "$MNT/untar.new" && tar xf ${q(c.ds.srcTar)} -C "$MNT/untar.new"`,
    check: () => 'cd "$MNT/untar.new" && find . | wc -l && tar cf - . | wc -c',
    cleanup: (c) => nativeOnly(c, `rm -rf ${q(path.join(c.ds.native, 'untar.new'))}`),
  },
  {
    name: 'untar-over',
    description: 'extract the same tar over a lower dir holding the same files (copy-up of dirs, every file replaced)',
    cold: false,
    prepare: (c) => `cat ${q(c.ds.srcTar)} > /dev/null`,
    command: (c) => `tar xf ${q(c.ds.srcTar)} -C "$MNT/inc"`,
    check: () => 'cd "$MNT/inc" && find . | wc -l && tar cf - . | wc -c',
    cleanup: (c) => nativeOnly(c, restoreNative(c.ds, ['inc'])),
  },
  {
    name: 'rm-tree',
    description: 'rm -rf of merged lower dirs (a quarter of the tree: whiteouts for every entry)',
    cold: false,
    command: (c) => `cd "$MNT" && rm -rf ${c.ds.rmDirs.map(q).join(' ')}`,
    check: (c) => `cd "$MNT" && ls tree | wc -l && ls -d ${c.ds.rmDirs.map(q).join(' ')} 2>/dev/null | wc -l`,
    cleanup: (c) => nativeOnly(c, restoreNative(c.ds, c.ds.rmDirs)),
  },
  {
    name: 'fio-randrw',
    description: 'fio: random 4 KiB reads and writes (half each, one pass over the size) on a copied-up file, then fsync',
    cold: false,
    requires: 'fio',
    // copy-up (untimed): overwrite the first byte in place
    prepare: () => 'printf x | dd of="$MNT/fio.bin" bs=1 count=1 conv=notrunc status=none',
    command: (c) =>
      [
        'fio --name=randrw --filename="$MNT/fio.bin" --rw=randrw --rwmixread=50 --bs=4k',
        `--size=${c.ds.fioSize} --io_size=${c.ds.fioSize} --ioengine=psync --fallocate=none`,
        '--randrepeat=1 --randseed=4242 --buffer_pattern=0x5a --end_fsync=1 --output=/dev/null',
      ].join(' '),
    check: () => 'cksum < "$MNT/fio.bin"',
    cleanup: (c) => nativeOnly(c, `cp -a ${q(path.join(c.ds.lowers[1], 'fio.bin'))} ${q(path.join(c.ds.native, 'fio.bin'))}`),
  },
  {
    name: 'mount-cycle',
    description: `${MOUNT_CYCLES} × (mount over the 3 lowers, ls of the root, unmount): a mount's time to ready, start-up included`,
    cold: false,
    ownMounts: true,
    prepare: (c) => cycleDirs(ownOf(c)).map((d) => d.make).join('\n'),
    command: (c) => {
      const o = ownOf(c);
      return cycleDirs(o)
        .map((d) => `${o.mount(c.ds.lowers, d.upper, d.work, d.mnt)} && ls ${q(d.mnt)} > /dev/null && ${o.unmount(d.mnt)} || exit 1`)
        .join('\n');
    },
    cleanup: (c) => unmountLeft(ownOf(c), cycleDirs(ownOf(c)).map((d) => d.mnt)),
  },
  {
    name: 'fresh-walk',
    description: 'mount the Debian minbase rootfs split into 3 lowers, then find over it, caches dropped first: start-up and a cold walk',
    cold: true,
    ownMounts: true,
    rootfs: true,
    prepare: (c) => ownDirs(ownOf(c).dir, 'walk').make,
    command: (c) => {
      const o = ownOf(c);
      const d = ownDirs(o.dir, 'walk');
      return `${o.mount(o.rootfs ?? [], d.upper, d.work, d.mnt)} && cd ${q(d.mnt)} && find . | wc -l`;
    },
    cleanup: (c) => unmountLeft(ownOf(c), [ownDirs(ownOf(c).dir, 'walk').mnt]),
  },
  {
    name: 'lookup-miss',
    description: 'stat of 20000 names that do not exist, in a shell loop: one LOOKUP round trip each (the per-request latency)',
    cold: false,
    diagnostic: true,
    command: () => 'cd "$MNT/list" && i=0; while [ $i -lt 20000 ]; do [ -e "missing-$i" ]; i=$((i+1)); done; ls | wc -l',
  },
];
