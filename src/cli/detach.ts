/**
 * Detaching: `stratafs ... MNT` returns (exit 0) only once the mount is ready, and
 * leaves nothing behind that holds the caller's stdin/stdout/stderr open — container
 * tools wait for EOF on the stderr they passed us.
 *
 * The waiting side is the shell launcher bin/stratafs (so that a mount costs one Node.js
 * start): it runs this program (which makes itself a new session's leader before it
 * mounts, src/mount/session.ts) with stdio on /dev/null and a pipe on fd 3, announced
 * by STRATAFS_READY_FD=3. The daemon writes the verdict's lines
 * on that pipe ("notice TEXT", then "ready" | "error TEXT" | "usage TEXT": the one
 * verdict protocol, src/mount/verdict.ts) and closes it after the verdict. If the pipe
 * closes without one, the daemon died: that is an error too.
 */
import * as fs from 'node:fs';
import { toLines, type Verdict } from '../mount/verdict';

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
  const line = (v: Verdict | { kind: 'notice'; text: string }): void => {
    if (v.kind === 'notice') send(`notice ${v.text}`, false);
    else for (const l of toLines(v)) send(l, !l.startsWith('notice '));
  };
  return {
    notice: (text) => line({ kind: 'notice', text }),
    ready: () => line({ kind: 'ready' }),
    error: (text) => line({ kind: 'error', text }),
    usage: (text) => line({ kind: 'usage', text }),
  };
}

/** Reports a verdict on `channel`: its notice, then its outcome. */
export function deliver(channel: ReadyChannel, v: Verdict): void {
  if (v.kind === 'ready') {
    if (v.notice) channel.notice(v.notice);
    channel.ready();
  } else if (v.kind === 'usage') channel.usage(v.text);
  else channel.error(v.text);
}

/** A channel for a foreground mount: notices and errors go straight to stderr. */
export const foregroundChannel: ReadyChannel = {
  notice: (text) => process.stderr.write(`stratafs: ${text}\n`),
  ready: () => undefined,
  error: (text) => process.stderr.write(`stratafs: ${text}\n`),
  usage: (text) => process.stderr.write(`stratafs: ${text}\n`),
};
