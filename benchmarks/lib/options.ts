/**
 * Command line of the benchmark program (`npm run bench -- [OPTIONS]`).
 */
import * as path from 'node:path';
import { DEFAULT_ROOTFS_TAR } from './rootfs';

export const TARGET_NAMES = ['native', 'kernel', 'fuse-overlayfs', 'stratafs', 'stratafs-daemon', 'stratafs-uring'] as const;
export type TargetName = (typeof TARGET_NAMES)[number];

/** Setups compared by the layer-sharing measurement (--sharing). */
export const SHARING_NAMES = ['kernel', 'fuse-overlayfs', 'stratafs', 'stratafs-daemon', 'full-copy', 'reflink-copy'] as const;
export type SharingName = (typeof SHARING_NAMES)[number];

export interface BenchOptions {
  /** files in the main lower tree */
  files: number;
  /** size of the big lower file, MiB */
  bigMib: number;
  /** files in the dir of small files (copy-up workload) */
  smallFiles: number;
  /** entries of the dir listed with ls -l */
  listEntries: number;
  reps: number;
  quick: boolean;
  only?: string[];
  targets: TargetName[];
  /** the setups of --sharing (from --targets when given) */
  sharingTargets: SharingName[];
  /** parent of this run's scratch directory */
  scratch: string;
  /** where built datasets are kept between runs */
  cache: string;
  /** run the layer-sharing measurement instead of the workloads */
  sharing: boolean;
  /** containers (mounts) of the layer-sharing measurement */
  containers: number;
  keep: boolean;
  /** where latest.json and latest.svg go */
  out: string;
  /** directory archived once and extracted by the untar workload */
  untarSource: string;
  /** rootfs tarball split into the lowers of fresh-walk */
  rootfs: string;
  /** seconds a single workload command may take before it is killed */
  timeoutSec: number;
  help: boolean;
}

export const USAGE = `usage: npm run bench -- [OPTIONS]
  --files=N          files in the main lower tree (default 50000)
  --big-mib=N        size of the big lower file in MiB (default 512)
  --small=N          small lower files appended to (default 2000)
  --list=N           entries of the dir listed with ls -l (default 1000)
  --reps=N           repetitions, targets alternated within each (default 3)
  --quick            small sizes, 1 repetition (a smoke run)
  --sharing          measure layer sharing instead of the workloads
  --containers=N     mounts of the sharing measurement (default 8)
  --only=W,W         run only these workloads (names as in the table)
  --targets=T,T      among ${TARGET_NAMES.join(', ')} (default all)
  --scratch=DIR      parent of the scratch directory (default /var/tmp/stratafs-bench)
  --cache=DIR        where datasets are built once and kept (default SCRATCH/cache)
  --keep             keep the scratch directory
  --out=DIR          results directory (default benchmarks/results)
  --rootfs=TAR       rootfs tarball walked by fresh-walk (default: the Debian minbase tarball
                     the container tests make once, ${DEFAULT_ROOTFS_TAR})
  --untar-source=DIR directory archived for the untar workload (default /usr/include)
  --timeout=S        seconds before one workload command is killed (default 600)`;

function positiveInt(name: string, value: string): number {
  if (!/^\d+$/.test(value) || Number(value) === 0) throw new Error(`--${name} needs a positive integer, got "${value}"`);
  return Number(value);
}

function list(value: string): string[] {
  return value
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

export function parseOptions(argv: string[], repoRoot: string): BenchOptions {
  const o: BenchOptions = {
    files: 50000,
    bigMib: 512,
    smallFiles: 2000,
    listEntries: 1000,
    reps: 3,
    quick: false,
    targets: [...TARGET_NAMES],
    sharingTargets: [...SHARING_NAMES],
    scratch: '/var/tmp/stratafs-bench',
    cache: '',
    sharing: false,
    containers: 8,
    keep: false,
    out: path.join(repoRoot, 'benchmarks', 'results'),
    untarSource: '/usr/include',
    rootfs: DEFAULT_ROOTFS_TAR,
    timeoutSec: 600,
    help: false,
  };
  const set = new Set<string>();
  let targets: string[] | undefined;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (!arg.startsWith('--')) throw new Error(`unexpected argument "${arg}"`);
    const [name, inline] = arg.slice(2).split(/=(.*)/s, 2) as [string, string | undefined];
    let value = inline;
    const flag = ['quick', 'keep', 'help', 'sharing'].includes(name);
    if (!flag && value === undefined) {
      value = argv[++i];
      if (value === undefined) throw new Error(`--${name} needs a value`);
    }
    set.add(name);
    const v = value ?? '';
    switch (name) {
      case 'files': o.files = positiveInt(name, v); break;
      case 'big-mib': o.bigMib = positiveInt(name, v); break;
      case 'small': o.smallFiles = positiveInt(name, v); break;
      case 'list': o.listEntries = positiveInt(name, v); break;
      case 'reps': o.reps = positiveInt(name, v); break;
      case 'containers': o.containers = positiveInt(name, v); break;
      case 'sharing': o.sharing = true; break;
      case 'cache': o.cache = path.resolve(v); break;
      case 'timeout': o.timeoutSec = positiveInt(name, v); break;
      case 'quick': o.quick = true; break;
      case 'keep': o.keep = true; break;
      case 'help': o.help = true; break;
      case 'only': o.only = list(v); break;
      case 'scratch': o.scratch = path.resolve(v); break;
      case 'out': o.out = path.resolve(v); break;
      case 'untar-source': o.untarSource = path.resolve(v); break;
      case 'rootfs': o.rootfs = path.resolve(v); break;
      case 'targets': targets = list(v); break;
      default:
        throw new Error(`unknown option --${name}`);
    }
  }
  if (o.quick) {
    // explicit sizes still win over --quick
    if (!set.has('files')) o.files = 2000;
    if (!set.has('big-mib')) o.bigMib = 16;
    if (!set.has('reps')) o.reps = 1;
    if (!set.has('untar-source')) o.untarSource = '/usr/include/linux';
    if (!set.has('small')) o.smallFiles = 500;
  }
  if (!set.has('cache')) o.cache = path.join(o.scratch, 'cache');
  if (targets) {
    const known: readonly string[] = o.sharing ? SHARING_NAMES : TARGET_NAMES;
    const bad = targets.filter((n) => !known.includes(n));
    if (bad.length > 0 || targets.length === 0) {
      throw new Error(`unknown target "${bad[0] ?? ''}" (known${o.sharing ? ' with --sharing' : ''}: ${known.join(', ')})`);
    }
    if (o.sharing) o.sharingTargets = targets as SharingName[];
    else o.targets = targets as TargetName[];
  }
  return o;
}
