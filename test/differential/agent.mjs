#!/usr/bin/env node
// The differential test agent: a plain Node program, run as a child process, that does
// filesystem work inside one mount so the test runner itself never touches a mount that
// may be served by a FUSE daemon (a blocking call on a hung mount would hang the runner).
//
//   node agent.mjs run ROOT            ops (JSON array) on stdin -> outcomes (JSON) on stdout
//   node agent.mjs snapshot ROOT KIND  KIND = merged | upper     -> snapshot (JSON) on stdout
//
// Each op names paths relative to ROOT. Each outcome is { ok: true, value? } or
// { err: CODE } where CODE is the errno code (ENOENT, ...). Values are chosen so that equal
// behaviour gives equal outcomes: no inode numbers, no atime/ctime, and an mtime only when
// it was set on purpose (see `timeField` in snapshot.mjs).
//
// The system calls node:fs lacks (renameat2 flags, mknod, utimensat in ns) and the
// multi-step probes (probes.py: 64-bit offsets, fds held across renames, other users)
// go to one python3 co-process (syscalls.py serve), started on first use.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { describe, snapshot } from './snapshot.mjs';
import { getXattr, listXattrs, removeXattr, setXattr } from './xattr-tools.mjs';

const { O_CREAT, O_EXCL, O_WRONLY, O_APPEND, O_TRUNC, O_RDONLY, O_NOFOLLOW } = fs.constants;
const SYSCALLS_PY = join(dirname(fileURLToPath(import.meta.url)), 'syscalls.py');

function digest(buf) {
  return `${buf.length}:${createHash('sha256').update(buf).digest('hex').slice(0, 16)}`;
}

function coded(code) {
  const err = new Error(code);
  err.code = code;
  return err;
}

/**
 * Opening a FIFO blocks until the other end opens, and device nodes are not openable on a
 * nodev mount (stratafs mounts nodev, the kernel oracle does not): ops that would open an
 * existing special file (through symlinks too) fail with the harness code SPECIAL instead.
 */
function refuseSpecial(path) {
  let st;
  try {
    st = fs.statSync(path);
  } catch {
    return; // the op itself reports the error
  }
  if (st.isFIFO() || st.isCharacterDevice() || st.isBlockDevice() || st.isSocket()) throw coded('SPECIAL');
}

function withFd(path, flags, mode, fn) {
  if ((flags & (O_CREAT | O_EXCL)) !== (O_CREAT | O_EXCL)) refuseSpecial(path);
  const fd = fs.openSync(path, flags, mode);
  try {
    return fn(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** The python3 co-process for syscalls node:fs lacks: one JSON line out, one back. */
class Syscalls {
  #child;
  #waiting = [];

  #start() {
    const child = spawn('python3', ['-I', '-S', SYSCALLS_PY, 'serve'], { stdio: ['pipe', 'pipe', 'inherit'] });
    createInterface({ input: child.stdout }).on('line', (line) => this.#waiting.shift()?.resolve(JSON.parse(line)));
    child.on('exit', (code, signal) => {
      for (const w of this.#waiting.splice(0)) w.reject(new Error(`syscalls.py exited (${code ?? signal})`));
      this.#child = undefined;
    });
    child.on('error', (e) => {
      for (const w of this.#waiting.splice(0)) w.reject(e);
    });
    this.#child = child;
    return child;
  }

  async call(name, args) {
    const child = this.#child ?? this.#start();
    const reply = await new Promise((resolve, reject) => {
      this.#waiting.push({ resolve, reject });
      child.stdin.write(`${JSON.stringify({ call: name, args })}\n`);
    });
    if (reply.err) throw coded(reply.err);
    return reply.value;
  }

  close() {
    this.#child?.stdin.end();
  }
}

const syscalls = new Syscalls();

/** Names of open(2) flags an `open` op may use. */
const OPEN_FLAGS = new Set(['O_RDONLY', 'O_WRONLY', 'O_RDWR', 'O_CREAT', 'O_EXCL', 'O_TRUNC', 'O_APPEND', 'O_NOFOLLOW', 'O_DIRECTORY']);

/** Op implementations: each gets (abs(p) resolver, op) and returns an optional value (or a promise of one). */
const OPS = {
  create(at, op) {
    withFd(at(op.path), O_CREAT | O_EXCL | O_WRONLY, parseInt(op.mode ?? '644', 8), (fd) => {
      if (op.data) fs.writeSync(fd, op.data);
    });
  },
  /** open(O_CREAT|O_TRUNC) without O_EXCL: replaces content, copies up a lower file. */
  overwrite(at, op) {
    withFd(at(op.path), O_CREAT | O_TRUNC | O_WRONLY, 0o644, (fd) => {
      if (op.data) fs.writeSync(fd, op.data);
    });
  },
  /** open(2) with the named flags, then optionally write DATA at OFFSET (or the file position). */
  open(at, op) {
    let flags = 0;
    for (const name of op.flags) {
      if (!OPEN_FLAGS.has(name)) throw coded(`BAD_FLAG:${name}`);
      flags |= fs.constants[name];
    }
    withFd(at(op.path), flags, parseInt(op.mode ?? '644', 8), (fd) => {
      if (op.data) fs.writeSync(fd, op.data, op.offset ?? null);
    });
  },
  write(at, op) {
    return withFd(at(op.path), O_WRONLY, undefined, (fd) => fs.writeSync(fd, op.data, op.offset));
  },
  append(at, op) {
    return withFd(at(op.path), O_WRONLY | O_APPEND, undefined, (fd) => fs.writeSync(fd, op.data));
  },
  truncate(at, op) {
    // fs.truncateSync opens the file; truncate(2) semantics are kept (EISDIR, ENOENT...).
    refuseSpecial(at(op.path));
    fs.truncateSync(at(op.path), op.size);
  },
  chmod(at, op) {
    fs.chmodSync(at(op.path), parseInt(op.mode, 8));
  },
  chown(at, op) {
    fs.lchownSync(at(op.path), op.uid, op.gid);
  },
  rename(at, op) {
    fs.renameSync(at(op.from), at(op.to));
  },
  /** renameat2 with FLAGS (noreplace, exchange, whiteout). */
  rename2(at, op) {
    return syscalls.call('renameat2', { from: at(op.from), to: at(op.to), flags: op.flags });
  },
  /** mknod of a FIFO or a device node (never 0/0, which is a whiteout on disk). */
  mknod(at, op) {
    return syscalls.call('mknod', { path: at(op.path), kind: op.kind, mode: op.mode, major: op.major, minor: op.minor });
  },
  /** utimensat with [sec, nsec] times or "omit". */
  utimens(at, op) {
    return syscalls.call('utimens', { path: at(op.path), atime: op.atime, mtime: op.mtime, nofollow: op.nofollow ?? false });
  },
  unlink(at, op) {
    fs.unlinkSync(at(op.path));
  },
  rmdir(at, op) {
    fs.rmdirSync(at(op.path));
  },
  mkdir(at, op) {
    fs.mkdirSync(at(op.path), parseInt(op.mode ?? '755', 8));
  },
  link(at, op) {
    fs.linkSync(at(op.from), at(op.to));
  },
  symlink(at, op) {
    fs.symlinkSync(op.target, at(op.path));
  },
  readlink(at, op) {
    return fs.readlinkSync(at(op.path));
  },
  setxattr(at, op) {
    setXattr(at(op.path), op.name, op.value);
  },
  removexattr(at, op) {
    removeXattr(at(op.path), op.name);
  },
  getxattr(at, op) {
    return getXattr(at(op.path), op.name);
  },
  listxattr(at, op) {
    return listXattrs(at(op.path));
  },
  readdir(at, op) {
    // Names and d_type; "." and ".." are not returned by readdir(3) wrappers in Node.
    const kind = (d) =>
      d.isDirectory() ? 'd' : d.isSymbolicLink() ? 'l' : d.isFile() ? 'f' : d.isFIFO() ? 'p' : d.isCharacterDevice() ? 'c' : 'o';
    return fs
      .readdirSync(at(op.path), { withFileTypes: true })
      .map((d) => `${d.name}:${kind(d)}`)
      .sort();
  },
  read(at, op) {
    return withFd(at(op.path), O_RDONLY | O_NOFOLLOW, undefined, (fd) => {
      const chunks = [];
      const buf = Buffer.alloc(65536);
      for (;;) {
        const n = fs.readSync(fd, buf, 0, buf.length, null);
        if (n === 0) break;
        chunks.push(Buffer.from(buf.subarray(0, n)));
      }
      return digest(Buffer.concat(chunks));
    });
  },
  stat(at, op) {
    const p = at(op.path);
    const rec = describe(p, fs.lstatSync(p, { bigint: true }));
    if (rec.type === 'file') rec.sha256 = rec.sha256.slice(0, 16);
    return rec;
  },
  /** A multi-step probe of probes.py (NAME, optional ARGS); its value is the outcome. */
  probe(at, op) {
    return syscalls.call('probe', { root: at(''), name: op.name, args: op.args });
  },
  /** Two names of one file must report one inode (hard links, after copy-up too). */
  sameinode(at, op) {
    const a = fs.lstatSync(at(op.a));
    const b = fs.lstatSync(at(op.b));
    return a.ino === b.ino && a.dev === b.dev;
  },
};

export async function runOps(root, ops) {
  const at = (rel) => join(root, rel);
  const outcomes = [];
  for (const op of ops) {
    const impl = OPS[op.op];
    if (!impl) {
      outcomes.push({ err: `UNKNOWN_OP:${op.op}` });
      continue;
    }
    try {
      const value = await impl(at, op);
      outcomes.push(value === undefined ? { ok: true } : { ok: true, value });
    } catch (e) {
      outcomes.push({ err: typeof e?.code === 'string' ? e.code : `THROWN:${String(e?.message ?? e)}` });
    }
  }
  return outcomes;
}

async function readStdin() {
  const chunks = [];
  for await (const c of process.stdin) chunks.push(c);
  return Buffer.concat(chunks).toString('utf8');
}

async function main(argv) {
  process.umask(0o022);
  const [cmd, root, kind] = argv;
  if (cmd === 'run' && root) {
    const ops = JSON.parse(await readStdin());
    try {
      process.stdout.write(JSON.stringify(await runOps(root, ops)));
    } finally {
      syscalls.close();
    }
  } else if (cmd === 'snapshot' && root && (kind === 'merged' || kind === 'upper')) {
    process.stdout.write(JSON.stringify(snapshot(root, kind)));
  } else {
    process.stderr.write('usage: agent.mjs run ROOT < ops.json | agent.mjs snapshot ROOT merged|upper\n');
    process.exitCode = 2;
  }
}

await main(process.argv.slice(2));
