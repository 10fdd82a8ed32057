/**
 * What a mount through bin/stratafs starts and looks up before it is ready (README
 * "What each lever gave"): the launcher execs node itself, no setsid(1) in between, and
 * the daemon still leads a session of its own (it calls setsid(2) before it mounts); the
 * daemon loads the native addon by the first path it tries. The launcher and its
 * children run under strace, which shows their execs and path lookups.
 */
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { daemonsFor, plainExec, runOk, waitFor } from '../lib/proc';
import { scratchLayers } from '../lib/tmp';

const LAUNCHER = path.resolve(__dirname, '..', '..', 'bin', 'stratafs');
const hasStrace = spawnSync('strace', ['-V']).status === 0;

function isMounted(mnt: string): boolean {
  return fs.readFileSync('/proc/mounts', 'utf8').split('\n').some((l) => l.split(' ')[1] === mnt);
}

/** fields of /proc/PID/stat after the command name: [state, ppid, pgrp, session, ...] */
function statFields(pid: number): string[] {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

t.test('a mount through bin/stratafs: node exec\'d by the launcher itself, the daemon a session leader, the addon found at once',
  { skip: hasStrace ? false : 'strace is not installed' }, async (t) => {
    const { dir, mnt, layerOption } = await scratchLayers(t, 'launcher-start');
    const log = path.join(dir, 'strace.log');
    const [cmd, args] = plainExec([LAUNCHER, '-o', layerOption, mnt]);
    // -f follows the daemon too: strace ends with it, after the unmount
    const strace = spawn('strace', ['-f', '-qq', '-e', 'trace=execve,openat,statx,newfstatat,stat,lstat', '-o', log, cmd, ...args],
      { stdio: 'ignore' });
    const ended = new Promise<number | null>((r) => strace.on('close', r));
    t.teardown(async () => {
      if (isMounted(mnt)) await runOk('fusermount3', ['-u', '-z', mnt]);
      if (strace.exitCode === null) strace.kill('SIGKILL');
    });
    t.ok(await waitFor(() => isMounted(mnt), 30000), 'mounted');
    // strace's own argv names the launcher and the mountpoint too
    const [pid] = daemonsFor(mnt).filter((p) => fs.readFileSync(`/proc/${p}/comm`, 'utf8').trim() === 'node');
    t.ok(pid !== undefined, 'the daemon serving the mount was found');
    if (pid !== undefined) {
      const [, , pgrp, session] = statFields(pid);
      t.equal(session, String(pid), 'the daemon leads a session of its own');
      t.equal(pgrp, String(pid), 'and its process group');
    }
    await runOk('fusermount3', ['-u', mnt]);
    t.equal(await ended, 0, 'strace (with the launcher and the daemon) ended');
    const lines = fs.readFileSync(log, 'utf8').split('\n');
    const execs = lines.map((l) => /execve\("([^"]+)".*\) = 0$/.exec(l)?.[1]).filter((p): p is string => p !== undefined);
    t.same(execs.map((p) => path.basename(p)), ['env', 'stratafs', 'node'], `programs exec'd: ${execs.join(' ')}`);
    const missed = lines.filter((l) => l.includes('native-bindings') && l.includes('ENOENT'));
    t.same(missed, [], 'no lookup of the addon missed');
    t.ok(lines.some((l) => /"[^"]*native-bindings\/build\/Release\/stratafs\.node"/.test(l) && !l.includes('ENOENT')), 'the addon was opened');
  });
