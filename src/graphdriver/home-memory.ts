/**
 * The Home dockerd gave at its last Init, remembered next to the plugin's socket
 * (`.NAME.sock.home`), so a plugin restarted under a running dockerd (which sends Init
 * only when it starts itself) serves the same layer store again.
 *
 * The file is written atomically, mode 0600, by the process that owns the socket. It is
 * believed only if it is a regular file of that same user, writable by no one else,
 * holding an absolute path to an existing directory; anything else is ignored (the
 * plugin then waits for an Init, as without it). dockerd ignores files in its plugin
 * directory that are not sockets, and a leading dot hides it from its scans.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import createDebug from 'debug';

const log = createDebug('stratafs:graphdriver');

export function homeFileFor(socketPath: string): string {
  return path.join(path.dirname(socketPath), `.${path.basename(socketPath)}.home`);
}

export function rememberHome(file: string, home: string): void {
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    fs.writeFileSync(tmp, `${home}\n`, { mode: 0o600 });
    fs.renameSync(tmp, file);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    log('cannot remember Home in %s: %s', file, (e as Error).message);
  }
}

/** The remembered Home, or undefined (with the reason logged). */
export function recallHome(file: string): string | undefined {
  let st: fs.Stats;
  try {
    st = fs.lstatSync(file);
  } catch {
    return undefined;
  }
  if (!st.isFile() || st.uid !== process.getuid?.() || (st.mode & 0o022) !== 0 || st.size > 4096) {
    log('ignoring %s: not a private file of this user', file);
    return undefined;
  }
  const home = fs.readFileSync(file, 'utf8').replace(/\n$/, '');
  if (!home.startsWith('/') || home.includes('\n') || home.includes('\0')) {
    log('ignoring %s: no absolute path in it', file);
    return undefined;
  }
  try {
    if (!fs.statSync(home).isDirectory()) throw new Error('not a directory');
  } catch (e) {
    log('ignoring remembered Home %s: %s', home, (e as Error).message);
    return undefined;
  }
  return home;
}
