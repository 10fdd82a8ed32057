// Extended attributes through the `attr` package tools (getfattr/setfattr), so that the
// differential agent depends on nothing but Node and standard tools. Symlinks are never
// followed (-h). Values are handled as hex strings ("0x..." on the wire of getfattr).
import { execFileSync, spawnSync } from 'node:child_process';

/** strerror(3) texts printed by getfattr/setfattr, mapped back to errno codes. */
const MESSAGES = new Map([
  ['No such file or directory', 'ENOENT'],
  ['No such attribute', 'ENODATA'],
  ['No data available', 'ENODATA'],
  ['Operation not supported', 'EOPNOTSUPP'],
  ['Permission denied', 'EACCES'],
  ['Operation not permitted', 'EPERM'],
  ['File exists', 'EEXIST'],
  ['Not a directory', 'ENOTDIR'],
  ['Numerical result out of range', 'ERANGE'],
  ['No space left on device', 'ENOSPC'],
  ['Argument list too long', 'E2BIG'],
  ['Invalid argument', 'EINVAL'],
  ['Input/output error', 'EIO'],
  ['Read-only file system', 'EROFS'],
  ['Too many levels of symbolic links', 'ELOOP'],
  ['Transport endpoint is not connected', 'ENOTCONN'],
]);

/** An Error with the errno code the tool reported (or XATTR:<text> when unknown). */
function toolError(stderr) {
  const text = stderr.trim().split('\n').pop() ?? '';
  const message = text.slice(text.lastIndexOf(': ') + 2);
  const err = new Error(text);
  err.code = MESSAGES.get(message) ?? `XATTR:${message}`;
  return err;
}

function run(tool, args) {
  const r = spawnSync(tool, args, { encoding: 'latin1' });
  if (r.error) throw r.error;
  if (r.status !== 0) throw toolError(r.stderr);
  return r.stdout;
}

export function setXattr(path, name, value) {
  run('setfattr', ['-h', '-n', name, '-v', `0x${Buffer.from(value, 'utf8').toString('hex')}`, '--', path]);
}

export function removeXattr(path, name) {
  run('setfattr', ['-h', '-x', name, '--', path]);
}

export function getXattr(path, name) {
  const out = run('getfattr', ['-h', '--absolute-names', '-e', 'hex', '-n', name, '--', path]);
  const parsed = parseDump(out);
  const attrs = [...parsed.values()][0] ?? {};
  if (!(name in attrs)) {
    const err = new Error(`${name}: no such attribute`);
    err.code = 'ENODATA';
    throw err;
  }
  return attrs[name];
}

/** All xattrs of one path (no symlink following) as { name: hex }. */
export function listXattrs(path) {
  const out = run('getfattr', ['-h', '--absolute-names', '-d', '-m', '-', '-e', 'hex', '--', path]);
  return [...parseDump(out).values()][0] ?? {};
}

/**
 * All xattrs under a tree in one getfattr run: Map(absolute path -> { name: hex }).
 * Only paths that have at least one xattr appear. Errors on single files are ignored here
 * (they show up as missing attributes, which the comparison reports).
 */
export function dumpTreeXattrs(root) {
  let out;
  try {
    out = execFileSync('getfattr', ['-R', '-P', '-h', '--absolute-names', '-d', '-m', '-', '-e', 'hex', '--', root], {
      encoding: 'latin1',
      stdio: ['ignore', 'pipe', 'ignore'],
      maxBuffer: 256 * 1024 * 1024,
    });
  } catch (e) {
    out = e.stdout ?? '';
  }
  return parseDump(out);
}

/** getfattr escapes file names: backslash -> \\, non-printable bytes -> \ooo. */
function unescapeName(s) {
  return s.replace(/\\(\\|[0-7]{3})/g, (_m, g) => (g === '\\' ? '\\' : String.fromCharCode(parseInt(g, 8))));
}

function parseDump(out) {
  const result = new Map();
  let current;
  for (const line of out.split('\n')) {
    if (line.startsWith('# file: ')) {
      current = {};
      result.set(unescapeName(line.slice('# file: '.length)), current);
    } else if (current && line.includes('=')) {
      const eq = line.indexOf('=');
      current[line.slice(0, eq)] = line.slice(eq + 1);
    } else if (current && line.length > 0 && !line.startsWith('#')) {
      current[line] = '';
    }
  }
  return result;
}
