/**
 * Detaching: `stratafs ... MNT` returns (exit 0) only once the mount is ready, and
 * leaves nothing behind that holds the caller's stdin/stdout/stderr open — container
 * tools wait for EOF on the stderr they passed us.
 *
 * The waiting side is the shell launcher bin/stratafs (so that a mount costs one Node.js
 * start): it runs this program as a new session leader with stdio on /dev/null and a
 * pipe on fd 3, announced by STRATAFS_READY_FD=3. The daemon writes lines on that pipe:
 *   "notice TEXT"  a line the caller prints on stderr (e.g. a stale mountpoint was cleared)
 *   "ready"        the mount is up: the caller exits 0
 *   "error TEXT"   the mount failed: the caller prints TEXT and exits 1
 *   "usage TEXT"   the command line is wrong: the caller prints TEXT and exits 2
 * and closes it after the verdict. If the pipe closes without one, the daemon died:
 * that is an error too.
 */
import * as fs from 'node:fs';

const CHANNEL_FD = 3;
const CHANNEL_ENV = 'STRATAFS_READY_FD';

/** Where a mount reports its progress: the waiting caller, or stderr in the foreground. */
export interface ReadyChannel {
  notice(text: string): void;
  ready(): void;
  /** the mount failed */
  error(text: string): void;
  /** the command line is wrong */
  usage(text: string): void;
}

/** In the daemon: the channel to the waiting caller, if there is one. */
export function daemonChannel(): ReadyChannel | undefined {
  if (process.env[CHANNEL_ENV] !== String(CHANNEL_FD)) return undefined;
  delete process.env[CHANNEL_ENV];
  // Node.js marks the inherited fd 3 close-on-exec at startup, so nothing the daemon
  // starts keeps the caller waiting (test/integration/cli.test.ts checks it)
  const fd = CHANNEL_FD;
  let open = true;
  const send = (line: string, close: boolean): void => {
    if (!open) return;
    try {
      fs.writeSync(fd, `${line.replace(/\n/g, ' ')}\n`);
    } catch {
      // the caller is gone: nothing to tell
    }
    if (close) {
      open = false;
      try {
        fs.closeSync(fd);
      } catch {
        // already closed
      }
    }
  };
  return {
    notice: (text) => send(`notice ${text}`, false),
    ready: () => send('ready', true),
    error: (text) => send(`error ${text}`, true),
    usage: (text) => send(`usage ${text}`, true),
  };
}

/** A channel for a foreground mount: notices and errors go straight to stderr. */
export const foregroundChannel: ReadyChannel = {
  notice: (text) => process.stderr.write(`stratafs: ${text}\n`),
  ready: () => undefined,
  error: (text) => process.stderr.write(`stratafs: ${text}\n`),
  usage: (text) => process.stderr.write(`stratafs: ${text}\n`),
};
