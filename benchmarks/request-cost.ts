/**
 * In-process cost of one request through the whole daemon path: a real FuseSession
 * (decode, dispatch, handler, reply encoding, the transport's writev call) over a real
 * overlay, fed request frames by a device of its own as the poller hands them over (one
 * request per wake-up, in a reused area), no kernel and no mount. What it leaves out is
 * the device's read and write syscalls and the wake-ups, the same for every build.
 *
 * The tree: one lower holding `list/` and `plain/` with `--files` small files each,
 * an empty upper. `list/` is listed once before the rounds (as `ls` would), `plain/`
 * never is. A second lower holds another `list/`, read through a new overlay in each
 * round: a listing no cache holds.
 *
 * A/B: every `--dist=DIR` (a built tree's dist/, e.g. a worktree of main and this one)
 * gets its own session and overlay in this one process; the rounds alternate between
 * them, so machine load falls on all alike. Prints the median ns per request of each
 * request kind and the ratio of the last to the first.
 *
 *   node dist/benchmarks/request-cost.js --dist=/path/to/main/dist --dist=dist [--rounds=9] [--files=1000] [--only=WORD]
 *
 * `--only=WORD`: only the request kinds whose name contains WORD (e.g. `LOOKUP`, to
 * profile one with `node --cpu-prof`).
 */
import { constants as fsc } from 'node:fs';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as P from '../src/fuse/wire/protocol';
import * as req from '../src/fuse/wire/request';

const { Opcode, Size } = P;

interface TransportLike {
  startReaders(fds: number[], onBatch: Batch, onEnd: (fd: number, errno: number) => void): unknown;
  stopReaders(h: unknown): void;
  writev(fd: number, bufs: Buffer[]): number;
  backingOpen(): number;
  backingClose(): void;
}
type Batch = (area: Buffer, index: Int32Array, n: number) => void;
interface SessionLike { start(): Promise<void> }
interface SessionCtor { new (o: object): SessionLike }
interface OverlayLike { destroy(): void | Promise<void> }

const DEV = 1 << 30;
const CALLER = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0, pid: process.pid };
/** the value buffer an `ls -l` getxattr offers */
const XATTR_SIZE = 256;
/** READDIRPLUS's size per request: one page, as the kernel asks */
const PAGE = 4096;

function arg(name: string, def: string): string {
  const a = process.argv.find((x) => x.startsWith(`--${name}=`));
  return a === undefined ? def : a.slice(name.length + 3);
}

/** One session over one overlay, and a device that hands it frames and takes its replies. */
class Subject {
  private onBatch: Batch | undefined;
  private readonly index = new Int32Array(3);
  private unique = 2n;
  /** replies written so far, and the last one's bytes (a copy) */
  replies = 0;
  last: Buffer = Buffer.alloc(0);
  private keepLast = true;
  private waiter: (() => void) | undefined;
  dir = 0;
  plain = 0;
  files: number[] = [];
  plainFiles: number[] = [];

  private constructor(readonly dist: string, readonly ov: OverlayLike) {}

  /** `warm`: `list/` listed and every file of both directories looked up (else INIT and `list/` only) */
  static async open(dist: string, tree: Tree, lower = tree.lower, warm = true): Promise<Subject> {
    /* eslint-disable @typescript-eslint/no-require-imports */
    const { Overlay } = require(path.resolve(dist, 'src/overlay')) as { Overlay: { open(c: unknown): Promise<OverlayLike> } };
    const { FuseSession } = require(path.resolve(dist, 'src/fuse/bridge')) as { FuseSession: SessionCtor };
    /* eslint-enable @typescript-eslint/no-require-imports */
    const ov = await Overlay.open({
      lowerdirs: [lower], upperdir: tree.upper, workdir: tree.work, xattrPrefix: 'trusted.overlay.', volatile: false,
    });
    const s = new Subject(dist, ov);
    const transport: TransportLike = {
      startReaders: (_fds, onBatch) => { s.onBatch = onBatch; return undefined; },
      stopReaders: () => undefined,
      writev: (_fd, bufs) => {
        s.replies++;
        let n = 0;
        for (const b of bufs) n += b.length;
        if (s.keepLast) s.last = Buffer.concat(bufs);
        const w = s.waiter;
        s.waiter = undefined;
        w?.();
        return n;
      },
      backingOpen: () => 1,
      backingClose: () => undefined,
    };
    const session = new FuseSession({ devFd: DEV, fs: ov, uring: 'off', passthrough: 'off', isRoot: false, transport, debug: () => undefined });
    void session.start();
    const offered = Object.values(P.InitFlag).reduce((a, b) => a | b, 0n) & ~P.InitFlag.INIT_RESERVED & ~P.InitFlag.OVER_IO_URING;
    await s.ask(s.frame(Opcode.INIT, 0, req.initIn(P.KERNEL_VERSION, P.KERNEL_MINOR_VERSION, offered)));
    s.dir = s.nodeOf(await s.ask(s.frame(Opcode.LOOKUP, 1, req.cstr('list'))));
    if (!warm) return s;
    s.plain = s.nodeOf(await s.ask(s.frame(Opcode.LOOKUP, 1, req.cstr('plain'))));
    // the listed directory: read to its end once, as `ls` does
    await s.ask(s.frame(Opcode.OPENDIR, s.dir, req.openIn(fsc.O_RDONLY | fsc.O_DIRECTORY)));
    for (let off = 0; ;) {
      const r = await s.ask(s.frame(Opcode.READDIRPLUS, s.dir, req.readIn(0, off, PAGE)));
      if (r.length <= Size.OUT_HEADER) break;
      off = req.lastPlusOffset(r);
    }
    for (const n of tree.names) s.files.push(s.nodeOf(await s.ask(s.frame(Opcode.LOOKUP, s.dir, req.cstr(n)))));
    for (const n of tree.names) s.plainFiles.push(s.nodeOf(await s.ask(s.frame(Opcode.LOOKUP, s.plain, req.cstr(n)))));
    return s;
  }

  frame(op: number, node: number, ...body: Buffer[]): Buffer {
    return req.requestFrame(op, node, (this.unique += 2n), CALLER, ...body);
  }

  /** hands over the frame of `len` bytes at `at` of `area` as one wake-up's request */
  send(area: Buffer, at: number, len: number): void {
    const ix = this.index;
    ix[0] = DEV;
    ix[1] = at;
    ix[2] = len;
    (this.onBatch as Batch)(area, ix, 1);
  }

  /** one request, answered: resolves with its reply */
  async ask(frame: Buffer): Promise<Buffer> {
    const before = this.replies;
    const done = new Promise<void>((resolve) => { this.waiter = resolve; });
    this.send(frame, 0, frame.length);
    if (this.replies === before) await done;
    this.waiter = undefined;
    if (this.last.readInt32LE(4) !== 0 && this.last.readInt32LE(4) !== -os.constants.errno.ENODATA
      && this.last.readInt32LE(4) !== -os.constants.errno.ENOSYS) {
      throw new Error(`${this.dist}: opcode ${frame.readUInt32LE(4)} answered ${this.last.readInt32LE(4)}`);
    }
    return this.last;
  }

  nodeOf(entry: Buffer): number {
    return Number(entry.readBigUInt64LE(Size.OUT_HEADER));
  }

  /**
   * Every frame of `frames` (one area, offsets and lengths) handed over in turn; a
   * request not answered when its hand-over returns (an async handler) is waited for.
   * Replies are not copied.
   */
  async run(area: Buffer, at: number[], len: number[]): Promise<void> {
    this.keepLast = false;
    try {
      for (let i = 0; i < at.length; i++) {
        const before = this.replies;
        this.send(area, at[i] as number, len[i] as number);
        if (this.replies === before) await new Promise<void>((resolve) => { this.waiter = resolve; });
      }
    } finally {
      this.keepLast = true;
    }
  }
}

interface Tree { root: string; lower: string; coldLower: string; upper: string; work: string; names: string[] }

function makeTree(files: number): Tree {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'stratafs-request-cost-'));
  const lower = path.join(root, 'lower');
  const coldLower = path.join(root, 'cold');
  const names = Array.from({ length: files }, (_, i) => `file-${i}`);
  for (const [l, d] of [[lower, 'list'], [lower, 'plain'], [coldLower, 'list']] as const) {
    fs.mkdirSync(path.join(l, d), { recursive: true });
    for (const n of names) fs.writeFileSync(path.join(l, d, n), 'small file\n');
  }
  const upper = path.join(root, 'upper');
  const work = path.join(root, 'work');
  fs.mkdirSync(upper);
  fs.mkdirSync(work);
  return { root, lower, coldLower, upper, work, names };
}

/** the frames of one loop, packed in one area as the poller packs a batch */
interface Frames { area: Buffer; at: number[]; len: number[]; requests: number }
function pack(frames: Buffer[]): Frames {
  const at: number[] = [];
  const len: number[] = [];
  let off = 0;
  for (const f of frames) {
    at.push(off);
    len.push(f.length);
    off += (f.length + 7) & ~7;
  }
  const area = Buffer.alloc(off);
  frames.forEach((f, i) => f.copy(area, at[i] as number));
  return { area, at, len, requests: frames.length };
}

/** a loop: its frames, made once per subject and handed over in turn; or a run of its own */
interface Loop {
  name: string;
  frames?: (s: Subject, names: string[]) => Buffer[] | Promise<Buffer[]>;
  /** requests served, and the ns they took */
  run?: (s: Subject, tree: Tree) => Promise<[number, number]>;
}
const LOOPS: Loop[] = [
  { name: 'LOOKUP hit, listed dir', frames: (s, names) => names.map((n) => s.frame(Opcode.LOOKUP, s.dir, req.cstr(n))) },
  { name: 'LOOKUP miss, listed dir', frames: (s, names) => names.map((n) => s.frame(Opcode.LOOKUP, s.dir, req.cstr(`missing-${n}`))) },
  { name: 'LOOKUP hit, unlisted dir', frames: (s, names) => names.map((n) => s.frame(Opcode.LOOKUP, s.plain, req.cstr(n))) },
  { name: 'LOOKUP miss, unlisted dir', frames: (s, names) => names.map((n) => s.frame(Opcode.LOOKUP, s.plain, req.cstr(`missing-${n}`))) },
  { name: 'GETATTR', frames: (s) => s.files.map((id) => s.frame(Opcode.GETATTR, id, req.u32(0, 0), req.u64(0))) },
  {
    name: 'GETXATTR security.selinux (ENODATA)',
    frames: (s) => s.files.map((id) => s.frame(Opcode.GETXATTR, id, req.u32(XATTR_SIZE, 0), req.cstr('security.selinux'))),
  },
  {
    name: 'GETXATTR system.posix_acl_access (ENODATA)',
    frames: (s) => s.files.map((id) => s.frame(Opcode.GETXATTR, id, req.u32(XATTR_SIZE, 0), req.cstr('system.posix_acl_access'))),
  },
  { name: 'READDIRPLUS, 4 KiB pages of the listed dir', frames: readdirFrames },
  { name: 'READDIRPLUS, 4 KiB pages of a dir never read (fresh overlay)', run: coldListing },
  { name: 'OPEN + READ + RELEASE, small lower file', run: (s) => timed(() => openReadRelease(s, s.files.slice(0, OPENS))) },
];
/** files opened, read and released per round */
const OPENS = 200;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
}

/** READDIRPLUS: every page of the listed directory, its cookies found by one pass */
async function readdirFrames(s: Subject): Promise<Buffer[]> {
  const frames: Buffer[] = [];
  for (let off = 0; ;) {
    const f = s.frame(Opcode.READDIRPLUS, s.dir, req.readIn(0, off, PAGE));
    const r = await s.ask(f);
    if (r.length <= Size.OUT_HEADER) break;
    frames.push(f);
    off = req.lastPlusOffset(r);
  }
  return frames;
}

async function timed(f: () => Promise<number>): Promise<[number, number]> {
  const t0 = process.hrtime.bigint();
  const n = await f();
  return [n, Number(process.hrtime.bigint() - t0)];
}

/**
 * READDIRPLUS of every page of `list/` in a lower of its own, through a new overlay (so
 * no cache holds it: what the read-ahead reads comes from the page cache)
 */
async function coldListing(s: Subject, tree: Tree): Promise<[number, number]> {
  const c = await Subject.open(s.dist, tree, tree.coldLower, false);
  try {
    return await timed(async () => {
      let n = 0;
      for (let off = 0; ; n++) {
        const r = await c.ask(c.frame(Opcode.READDIRPLUS, c.dir, req.readIn(0, off, PAGE)));
        if (r.length <= Size.OUT_HEADER) return n + 1;
        off = req.lastPlusOffset(r);
      }
    });
  } finally {
    await c.ov.destroy();
  }
}

/** OPEN, READ, RELEASE: run as it goes (the READ and RELEASE name the OPEN's fh) */
async function openReadRelease(s: Subject, ids: number[]): Promise<number> {
  for (const id of ids) {
    const fh = s.nodeOf(await s.ask(s.frame(Opcode.OPEN, id, req.openIn(fsc.O_RDONLY))));
    await s.ask(s.frame(Opcode.READ, id, req.readIn(fh, 0, PAGE)));
    await s.ask(s.frame(Opcode.RELEASE, id, req.releaseIn(fh)));
  }
  return 3 * ids.length;
}

async function main(): Promise<void> {
  const dists = process.argv.filter((x) => x.startsWith('--dist=')).map((x) => x.slice(7));
  if (dists.length === 0) dists.push(path.resolve(__dirname, '..'));
  const rounds = Number(arg('rounds', '9'));
  const files = Number(arg('files', '1000'));
  const tree = makeTree(files);
  try {
    const subjects: Subject[] = [];
    for (const d of dists) subjects.push(await Subject.open(d, tree));
    const only = arg('only', '');
    const loops = LOOPS.filter((l) => l.name.includes(only));
    const packed = new Map<string, Frames[]>();
    for (const { name, frames: make } of loops) {
      const per: Frames[] = [];
      if (make !== undefined) for (const s of subjects) per.push(pack(await make(s, tree.names)));
      packed.set(name, per);
    }
    const times = new Map<string, number[][]>(loops.map(({ name }) => [name, subjects.map(() => [])]));
    for (let r = 0; r < rounds + 1; r++) {
      for (const { name, run } of loops) {
        for (let k = 0; k < subjects.length; k++) {
          const i = r % 2 === 0 ? k : subjects.length - 1 - k;
          const s = subjects[i] as Subject;
          let n = 0;
          let took = 0;
          if (run !== undefined) {
            [n, took] = await run(s, tree);
          } else {
            const fr = (packed.get(name) as Frames[])[i] as Frames;
            // about 5,000 requests per subject and round
            const reps = Math.ceil(5000 / fr.requests);
            [n, took] = await timed(async () => {
              for (let rep = 0; rep < reps; rep++) await s.run(fr.area, fr.at, fr.len);
              return reps * fr.requests;
            });
          }
          const ns = took / n;
          if (r > 0) (times.get(name) as number[][])[i]?.push(ns); // round 0 warms up
        }
      }
    }
    console.log(`load average ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}; ${rounds} rounds, medians (min) ns per request`);
    console.log(`request | ${dists.join(' | ')} | last/first`);
    for (const { name } of loops) {
      const ts = times.get(name) as number[][];
      const m = ts.map(median);
      const lo = ts.map((x) => Math.min(...x));
      const ratio = ((m[m.length - 1] as number) / (m[0] as number)).toFixed(2);
      console.log(`${name} | ${m.map((x, i) => `${x.toFixed(0)} (${(lo[i] as number).toFixed(0)})`).join(' | ')} | ${ratio}`);
    }
    for (const s of subjects) await s.ov.destroy();
  } finally {
    fs.rmSync(tree.root, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
