/**
 * Detaching: `stratafs ... MNT` returns (exit 0) only once the mount is ready, and
 * leaves nothing behind that holds the caller's stdin/stdout/stderr open — container
 * tools wait for EOF on the stderr they passed us.
 *
 * The caller re-runs this program as a new session leader with stdio on /dev/null and a
 * pipe on fd 3. The daemon writes lines on that pipe:
 *   "notice TEXT"  a line the caller prints on stderr (e.g. a stale mountpoint was cleared)
 *   "ready"        the mount is up: the caller exits 0
 *   "error TEXT"   the mount failed: the caller prints TEXT and exits 1
 * If the pipe closes without "ready", the daemon died: that is an error too.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';

const CHANNEL_FD = 3;
const CHANNEL_ENV = 'STRATAFS_READY_FD';

/** In the daemon: the channel to the waiting caller, if there is one. */
export interface ReadyChannel {
  notice(text: string): void;
  ready(): void;
  error(text: string): void;
}

export function daemonChannel(): ReadyChannel | undefined {
  if (process.env[CHANNEL_ENV] !== String(CHANNEL_FD)) return undefined;
  delete process.env[CHANNEL_ENV];
  let open = true;
  const send = (line: string, close: boolean): void => {
    if (!open) return;
    try {
      fs.writeSync(CHANNEL_FD, `${line.replace(/\n/g, ' ')}\n`);
    } catch {
      // the caller is gone: nothing to tell
    }
    if (close) {
      open = false;
      try {
        fs.closeSync(CHANNEL_FD);
      } catch {
        // already closed
      }
    }
  };
  return {
    notice: (text) => send(`notice ${text}`, false),
    ready: () => send('ready', true),
    error: (text) => send(`error ${text}`, true),
  };
}

/**
 * In the caller: start the daemon (this script, same argv) and wait for its verdict.
 * Resolves with the exit code the caller should use.
 */
export function spawnDetached(script: string, argv: string[]): Promise<number> {
  const child = spawn(process.execPath, [script, ...argv], {
    detached: true,
    stdio: ['ignore', 'ignore', 'ignore', 'pipe'],
    env: { ...process.env, [CHANNEL_ENV]: String(CHANNEL_FD) },
  });
  const channel = child.stdio[CHANNEL_FD] as NodeJS.ReadableStream;
  let buffered = '';
  let verdict: number | undefined;
  return new Promise((resolve) => {
    const finish = (code: number): void => {
      if (verdict !== undefined) return;
      verdict = code;
      child.unref();
      (channel as unknown as { destroy(): void }).destroy();
      resolve(code);
    };
    channel.setEncoding('utf8');
    channel.on('data', (chunk: string) => {
      buffered += chunk;
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        const space = line.indexOf(' ');
        const word = space < 0 ? line : line.slice(0, space);
        const text = space < 0 ? '' : line.slice(space + 1);
        if (word === 'notice') process.stderr.write(`stratafs: ${text}\n`);
        else if (word === 'ready') finish(0);
        else if (word === 'error') {
          process.stderr.write(`stratafs: ${text}\n`);
          finish(1);
        }
      }
    });
    channel.on('end', () => {
      if (verdict === undefined) process.stderr.write('stratafs: the daemon exited before the mount was ready\n');
      finish(1);
    });
    child.on('error', (e) => {
      process.stderr.write(`stratafs: cannot start the daemon: ${e.message}\n`);
      finish(1);
    });
  });
}
