// One soak worker: random mixed operations inside its own directory of a mount, each
// recorded with its outcome, so that the same sequence can be replayed on the oracle.
//
//   node worker.mjs run MNT DIR SEED DEADLINE_MS LOG    ops until the deadline, log as JSON lines
//   node worker.mjs replay MNT LOG OUT                  the logged ops, outcomes to OUT
//
// Runs in its own process: the daemon never touches its own mount. Data written is
// derived from (seed, op number), so the log stays small and a replay writes the same
// bytes. Outcomes: "ok", "ok:VALUE" (a digest of what was read or listed) or the errno code.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { join } from 'node:path';

const NAMES = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'];
const DIRS = ['d0', 'd1', 'd2', 'x'];

function rng(seed) {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13; s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5; s >>>= 0;
    return s / 4294967296;
  };
}

/** Deterministic bytes for op number n of a worker. */
function bytes(seed, n, len) {
  const out = Buffer.alloc(len);
  let block = createHash('sha256').update(`${seed}:${n}`).digest();
  for (let i = 0; i < len; i += 32) {
    block.copy(out, i, 0, Math.min(32, len - i));
    block = createHash('sha256').update(block).digest();
  }
  return out;
}

const digest = (b) => createHash('sha256').update(b).digest('hex').slice(0, 16);

/** Generates op number n (paths relative to the worker dir). */
function generate(r, n) {
  const pick = (a) => a[Math.floor(r() * a.length)];
  const path = () => (r() < 0.4 ? `${pick(DIRS)}/${pick(NAMES)}` : pick(NAMES));
  const dir = () => (r() < 0.3 ? `${pick(DIRS)}/${pick(DIRS)}` : pick(DIRS));
  const k = r();
  if (k < 0.14) return { op: 'write', path: path(), off: Math.floor(r() * 70000), len: 1 + Math.floor(r() * 40000), n };
  if (k < 0.22) return { op: 'append', path: path(), len: 1 + Math.floor(r() * 9000), n };
  if (k < 0.30) return { op: 'create', path: path(), len: Math.floor(r() * 5000), n };
  if (k < 0.42) return { op: 'read', path: path() };
  if (k < 0.46) return { op: 'truncate', path: path(), size: Math.floor(r() * 50000) };
  if (k < 0.54) return { op: 'rename', from: r() < 0.3 ? dir() : path(), to: r() < 0.3 ? dir() : path() };
  if (k < 0.60) return { op: 'unlink', path: path() };
  if (k < 0.64) return { op: 'mkdir', path: dir() };
  if (k < 0.67) return { op: 'rmdir', path: dir() };
  if (k < 0.71) return { op: 'link', from: path(), to: path() };
  if (k < 0.74) return { op: 'symlink', target: pick(NAMES), path: path() };
  if (k < 0.78) return { op: 'chmod', path: r() < 0.5 ? path() : dir(), mode: pick([0o644, 0o600, 0o755, 0o700]) };
  if (k < 0.90) return { op: 'readdir', path: r() < 0.3 ? '.' : dir() };
  if (k < 0.96) return { op: 'stat', path: r() < 0.5 ? path() : dir() };
  return { op: 'fsync', path: path() };
}

function execute(root, seed, o) {
  const p = (x) => join(root, x);
  switch (o.op) {
    case 'write': {
      const fd = fs.openSync(p(o.path), 'r+');
      try { fs.writeSync(fd, bytes(seed, o.n, o.len), 0, o.len, o.off); } finally { fs.closeSync(fd); }
      return 'ok';
    }
    case 'append': fs.appendFileSync(p(o.path), bytes(seed, o.n, o.len)); return 'ok';
    case 'create': fs.writeFileSync(p(o.path), bytes(seed, o.n, o.len), { flag: 'wx' }); return 'ok';
    case 'read': return `ok:${digest(fs.readFileSync(p(o.path)))}`;
    case 'truncate': fs.truncateSync(p(o.path), o.size); return 'ok';
    case 'rename': fs.renameSync(p(o.from), p(o.to)); return 'ok';
    case 'unlink': fs.unlinkSync(p(o.path)); return 'ok';
    case 'mkdir': fs.mkdirSync(p(o.path)); return 'ok';
    case 'rmdir': fs.rmdirSync(p(o.path)); return 'ok';
    case 'link': fs.linkSync(p(o.from), p(o.to)); return 'ok';
    case 'symlink': fs.symlinkSync(o.target, p(o.path)); return 'ok';
    case 'chmod': fs.chmodSync(p(o.path), o.mode); return 'ok';
    case 'readdir': return `ok:${fs.readdirSync(p(o.path)).sort().join('/')}`;
    case 'stat': {
      const s = fs.lstatSync(p(o.path));
      return `ok:${s.mode.toString(8)}:${s.isDirectory() ? '-' : s.size}:${s.nlink}`;
    }
    case 'fsync': {
      const fd = fs.openSync(p(o.path), 'r');
      try { fs.fsyncSync(fd); } finally { fs.closeSync(fd); }
      return 'ok';
    }
    default: throw new Error(`unknown op ${o.op}`);
  }
}

function attempt(root, seed, o) {
  try {
    return execute(root, seed, o);
  } catch (e) {
    if (typeof e.code === 'string' && e.code.startsWith('E')) return e.code;
    throw e;
  }
}

const [mode, ...args] = process.argv.slice(2);
if (mode === 'run') {
  const [mnt, dir, seedArg, deadlineArg, log] = args;
  const seed = Number(seedArg);
  const deadline = Number(deadlineArg);
  const r = rng(seed);
  const root = join(mnt, dir);
  const out = fs.openSync(log, 'w');
  fs.writeSync(out, `${JSON.stringify({ dir, seed })}\n`);
  let n = 0;
  while (Date.now() < deadline) {
    const o = generate(r, n++);
    o.result = attempt(root, seed, o);
    fs.writeSync(out, `${JSON.stringify(o)}\n`);
  }
  fs.closeSync(out);
} else if (mode === 'replay') {
  const [mnt, log, outFile] = args;
  const lines = fs.readFileSync(log, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  const { dir, seed } = lines.shift();
  const root = join(mnt, dir);
  const diffs = [];
  for (const [i, o] of lines.entries()) {
    const got = attempt(root, seed, o);
    if (got !== o.result) diffs.push({ i, op: o, stratafs: o.result, oracle: got });
  }
  fs.writeFileSync(outFile, JSON.stringify({ dir, ops: lines.length, diffs: diffs.slice(0, 50), ndiffs: diffs.length }));
} else {
  process.stderr.write('usage: worker.mjs run MNT DIR SEED DEADLINE_MS LOG | replay MNT LOG OUT\n');
  process.exit(2);
}
