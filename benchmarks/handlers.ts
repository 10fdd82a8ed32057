/**
 * In-process microbenchmark of the warm metadata handlers: the overlay's LOOKUP (known
 * name and miss), GETATTR, GETXATTR (a name the file lacks, as `ls -l` asks) and
 * LISTXATTR, each followed by the reply encoding, on a real overlay of three lowers and
 * an upper (no mount, no device: what the daemon's JS thread spends per request besides
 * the transport).
 *
 * A/B: every `--dist=DIR` (a built tree's dist/, e.g. a worktree of main and this one)
 * is loaded in the same process, and the rounds alternate between them, so machine load
 * falls on all alike. Prints the median µs per operation of each and the ratio to the
 * first.
 *
 *   node dist/benchmarks/handlers.js --dist=/path/to/main/dist --dist=dist [--rounds=7] [--files=1000]
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

interface Subject {
  dist: string;
  ov: OverlayLike;
  enc: Encoders;
  dir: number;
  udir: number;
}

interface EntryLike { nodeId: number; attr: unknown }
interface OverlayLike {
  lookup(ctx: unknown, parent: number, name: string): EntryLike | null;
  getattr(ctx: unknown, node: number): unknown;
  getxattr(ctx: unknown, node: number, name: string): Buffer | null;
  listxattr(ctx: unknown, node: number): string[];
  forget(node: number, n: number): void;
  destroy(): void;
}
interface Encoders {
  encodeEntry(unique: bigint, e: unknown, t: { entry: number; attr: number }): Buffer[];
  encodeAttr(unique: bigint, a: unknown, timeout: number): Buffer[];
  encodeError(unique: bigint, errno: number): Buffer[];
  encodeNegativeEntry(unique: bigint, timeout: number): Buffer[];
}

const ctx = { uid: 0, gid: 0, pid: process.pid };
const T = { entry: 1, attr: 1 };

function arg(name: string, def: string): string {
  const a = process.argv.find((x) => x.startsWith(`--${name}=`));
  return a === undefined ? def : a.slice(name.length + 3);
}

interface NativeLike { native: { setxattr(path: string, name: string, value: Buffer, flags: number, follow: boolean): void } }

/**
 * lowers l0 (top) .. l2: a/b/c/list holds `files` files, spread over the three lowers;
 * every other file has a user xattr (as files labelled by SELinux or with capabilities
 * have one: `ls -l` then asks for names they lack)
 */
function makeTree(root: string, files: number, n: NativeLike): { lowers: string[]; upper: string; work: string } {
  const lowers = [0, 1, 2].map((i) => path.join(root, `l${i}`));
  for (const l of lowers) fs.mkdirSync(path.join(l, 'a/b/c/list'), { recursive: true });
  for (let i = 0; i < files; i++) {
    const l = lowers[i % 3] as string;
    const f = path.join(l, 'a/b/c/list', `file-${i}`);
    fs.writeFileSync(f, 'x');
    if (i % 2 === 1) n.native.setxattr(f, 'user.label', Buffer.from('system_u:object_r:etc_t:s0'), 0, false);
  }
  const upper = path.join(root, 'upper');
  const work = path.join(root, 'work');
  // the same names in a directory only in the upper (what a build or an untar made)
  fs.mkdirSync(path.join(upper, 'u/v/w/list'), { recursive: true });
  for (let i = 0; i < files; i++) fs.writeFileSync(path.join(upper, 'u/v/w/list', `file-${i}`), 'x');
  fs.mkdirSync(work);
  return { lowers, upper, work };
}

async function open(dist: string, tree: ReturnType<typeof makeTree>): Promise<Subject> {
  /* eslint-disable @typescript-eslint/no-require-imports */
  const { Overlay } = require(path.resolve(dist, 'src/overlay')) as { Overlay: { open(c: unknown): Promise<OverlayLike> } };
  const enc = require(path.resolve(dist, 'src/fuse/wire/encode')) as Encoders;
  /* eslint-enable @typescript-eslint/no-require-imports */
  const ov = await Overlay.open({
    lowerdirs: tree.lowers, upperdir: tree.upper, workdir: tree.work, xattrPrefix: 'trusted.overlay.', volatile: false,
  });
  const walk = (parts: string[]): number => parts.reduce((d, p) => (ov.lookup(ctx, d, p) as EntryLike).nodeId, 1);
  return { dist, ov, enc, dir: walk(['a', 'b', 'c', 'list']), udir: walk(['u', 'v', 'w', 'list']) };
}

type Op = (s: Subject, names: string[], ids: number[], uids: number[]) => void;

const OPS: [string, Op][] = [
  ['lookup', (s, names) => {
    let u = 0n;
    for (const n of names) {
      const e = s.ov.lookup(ctx, s.dir, n) as EntryLike;
      s.enc.encodeEntry((u += 2n), e, T);
      s.ov.forget(e.nodeId, 1);
    }
  }],
  ['lookup-miss', (s, names) => {
    let u = 0n;
    for (const n of names) {
      if (s.ov.lookup(ctx, s.dir, `missing-${n}`) === null) s.enc.encodeNegativeEntry((u += 2n), 1);
    }
  }],
  ['getattr', (s, _n, ids) => {
    let u = 0n;
    for (const id of ids) s.enc.encodeAttr((u += 2n), s.ov.getattr(ctx, id), 1);
  }],
  ['getxattr-absent', (s, _n, ids) => {
    let u = 0n;
    for (const id of ids) {
      if (s.ov.getxattr(ctx, id, 'security.selinux') === null) s.enc.encodeError((u += 2n), 61);
      if (s.ov.getxattr(ctx, id, 'system.posix_acl_access') === null) s.enc.encodeError((u += 2n), 61);
    }
  }],
  ['lookup-upper', (s, names) => {
    let u = 0n;
    for (const n of names) {
      const e = s.ov.lookup(ctx, s.udir, n) as EntryLike;
      s.enc.encodeEntry((u += 2n), e, T);
      s.ov.forget(e.nodeId, 1);
    }
  }],
  ['getattr-upper', (s, _n, _ids, uids) => {
    let u = 0n;
    for (const id of uids) s.enc.encodeAttr((u += 2n), s.ov.getattr(ctx, id), 1);
  }],
  ['listxattr', (s, _n, ids) => {
    for (const id of ids) s.ov.listxattr(ctx, id);
  }],
];

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
}

async function main(): Promise<void> {
  const dists = process.argv.filter((x) => x.startsWith('--dist=')).map((x) => x.slice(7));
  if (dists.length === 0) dists.push(path.resolve(__dirname, '..'));
  const rounds = Number(arg('rounds', '7'));
  const files = Number(arg('files', '1000'));
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'stratafs-handlers-bench-'));
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const tree = makeTree(root, files, require(path.resolve(dists[0] as string, 'src/native')) as NativeLike);
    const names = Array.from({ length: files }, (_, i) => `file-${i}`);
    const subjects: Subject[] = [];
    for (const d of dists) subjects.push(await open(d, tree));
    // the kernel holds one lookup of every entry it asks GETATTR/GETXATTR about
    const ids = subjects.map((s) => names.map((n) => (s.ov.lookup(ctx, s.dir, n) as EntryLike).nodeId));
    const uids = subjects.map((s) => names.map((n) => (s.ov.lookup(ctx, s.udir, n) as EntryLike).nodeId));
    const times = new Map<string, number[][]>(OPS.map(([name]) => [name, subjects.map(() => [])]));
    for (let r = 0; r < rounds + 1; r++) {
      for (const [name, op] of OPS) {
        for (let k = 0; k < subjects.length; k++) {
          // alternate the order per round
          const i = r % 2 === 0 ? k : subjects.length - 1 - k;
          const s = subjects[i] as Subject;
          const t0 = process.hrtime.bigint();
          for (let rep = 0; rep < 5; rep++) op(s, names, ids[i] as number[], uids[i] as number[]);
          const us = Number(process.hrtime.bigint() - t0) / 1000 / (5 * files * (name === 'getxattr-absent' ? 2 : 1));
          if (r > 0) (times.get(name) as number[][])[i]?.push(us); // round 0 warms up
        }
      }
    }
    // the minimum too: on a loaded machine it is the steadier of the two
    console.log(`op | ${dists.map((d) => `${d} median (min) µs`).join(' | ')} | ratio last/first, medians (mins)`);
    for (const [name] of OPS) {
      const ts = times.get(name) as number[][];
      const m = ts.map(median);
      const lo = ts.map((x) => Math.min(...x));
      const ratio = (xs: number[]): string => ((xs[xs.length - 1] as number) / (xs[0] as number)).toFixed(2);
      console.log(`${name} | ${m.map((x, i) => `${x.toFixed(2)} (${(lo[i] as number).toFixed(2)})`).join(' | ')} | ${ratio(m)} (${ratio(lo)})`);
    }
    for (const s of subjects) s.ov.destroy();
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
