/**
 * Command line of the benchmark program (`npm run bench -- [OPTIONS]`).
 */
import * as path from 'node:path';

export const TARGET_NAMES = ['native', 'kernel', 'fuse-overlayfs', 'stratafs'] as const;
export type TargetName = (typeof TARGET_NAMES)[number];

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
  /** parent of this run's scratch directory */
  scratch: string;
  keep: boolean;
  /** where latest.json and latest.svg go */
  out: string;
  /** directory archived once and extracted by the untar workload */
  untarSource: string;
  /** seconds a single workload command may take before it is killed */
  timeoutSec: number;
  help: boolean;
}

export const USAGE = `usage: npm run bench -- [OPTIONS]
  --files=N          files in the main lower tree (default 20000)
  --big-mib=N        size of the big lower file in MiB (default 256)
  --reps=N           repetitions, targets alternated within each (default 3)
  --quick            tiny sizes, 1 repetition (a smoke run)
  --only=W,W         run only these workloads (names as in the table)
  --targets=T,T      among ${TARGET_NAMES.join(', ')} (default all)
  --scratch=DIR      parent of the scratch directory (default /var/tmp/stratafs-bench)
  --keep             keep the scratch directory
  --out=DIR          results directory (default benchmarks/results)
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
    files: 20000,
    bigMib: 256,
    smallFiles: 2000,
    listEntries: 1000,
    reps: 3,
    quick: false,
    targets: [...TARGET_NAMES],
    scratch: '/var/tmp/stratafs-bench',
    keep: false,
    out: path.join(repoRoot, 'benchmarks', 'results'),
    untarSource: '/usr/include',
    timeoutSec: 600,
    help: false,
  };
  const set = new Set<string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (!arg.startsWith('--')) throw new Error(`unexpected argument "${arg}"`);
    const [name, inline] = arg.slice(2).split(/=(.*)/s, 2) as [string, string | undefined];
    let value = inline;
    const flag = ['quick', 'keep', 'help'].includes(name);
    if (!flag && value === undefined) {
      value = argv[++i];
      if (value === undefined) throw new Error(`--${name} needs a value`);
    }
    set.add(name);
    const v = value ?? '';
    switch (name) {
      case 'files': o.files = positiveInt(name, v); break;
      case 'big-mib': o.bigMib = positiveInt(name, v); break;
      case 'reps': o.reps = positiveInt(name, v); break;
      case 'timeout': o.timeoutSec = positiveInt(name, v); break;
      case 'quick': o.quick = true; break;
      case 'keep': o.keep = true; break;
      case 'help': o.help = true; break;
      case 'only': o.only = list(v); break;
      case 'scratch': o.scratch = path.resolve(v); break;
      case 'out': o.out = path.resolve(v); break;
      case 'untar-source': o.untarSource = path.resolve(v); break;
      case 'targets': {
        const names = list(v);
        for (const n of names) {
          if (!(TARGET_NAMES as readonly string[]).includes(n)) {
            throw new Error(`unknown target "${n}" (known: ${TARGET_NAMES.join(', ')})`);
          }
        }
        o.targets = names as TargetName[];
        break;
      }
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
    o.smallFiles = 500;
  }
  return o;
}
