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
// behaviour gives equal outcomes: no inode numbers, no timestamps.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { describe, snapshot } from './snapshot.mjs';
import { getXattr, listXattrs, removeXattr, setXattr } from './xattr-tools.mjs';

const { O_CREAT, O_EXCL, O_WRONLY, O_APPEND, O_TRUNC, O_RDONLY, O_NOFOLLOW } = fs.constants;

function digest(buf) {
  return `${buf.length}:${createHash('sha256').update(buf).digest('hex').slice(0, 16)}`;
}

function withFd(path, flags, mode, fn) {
  const fd = fs.openSync(path, flags, mode);
  try {
    return fn(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Op implementations: each gets (abs(p) resolver, op) and returns an optional value. */
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
  write(at, op) {
    return withFd(at(op.path), O_WRONLY, undefined, (fd) => fs.writeSync(fd, op.data, op.offset));
  },
  append(at, op) {
    return withFd(at(op.path), O_WRONLY | O_APPEND, undefined, (fd) => fs.writeSync(fd, op.data));
  },
  truncate(at, op) {
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
    return fs
      .readdirSync(at(op.path), { withFileTypes: true })
      .map((d) => `${d.name}:${d.isDirectory() ? 'd' : d.isSymbolicLink() ? 'l' : d.isFile() ? 'f' : 'o'}`)
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
    const rec = describe(p, fs.lstatSync(p));
    if (rec.type === 'file') rec.sha256 = rec.sha256.slice(0, 16);
    return rec;
  },
  /** Two names of one file must report one inode (hard links, after copy-up too). */
  sameinode(at, op) {
    const a = fs.lstatSync(at(op.a));
    const b = fs.lstatSync(at(op.b));
    return a.ino === b.ino && a.dev === b.dev;
  },
};

export function runOps(root, ops) {
  const at = (rel) => join(root, rel);
  return ops.map((op) => {
    const impl = OPS[op.op];
    if (!impl) return { err: `UNKNOWN_OP:${op.op}` };
    try {
      const value = impl(at, op);
      return value === undefined ? { ok: true } : { ok: true, value };
    } catch (e) {
      return { err: typeof e?.code === 'string' ? e.code : `THROWN:${String(e?.message ?? e)}` };
    }
  });
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
    process.stdout.write(JSON.stringify(runOps(root, ops)));
  } else if (cmd === 'snapshot' && root && (kind === 'merged' || kind === 'upper')) {
    process.stdout.write(JSON.stringify(snapshot(root, kind)));
  } else {
    process.stderr.write('usage: agent.mjs run ROOT < ops.json | agent.mjs snapshot ROOT merged|upper\n');
    process.exitCode = 2;
  }
}

await main(process.argv.slice(2));
