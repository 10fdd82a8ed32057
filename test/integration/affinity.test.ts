/**
 * A mounted daemon's JS thread follows its client's CPU (src/fuse/bridge/affinity.ts):
 * a client pinned to one CPU doing many lookups leaves the daemon's main thread allowed
 * that CPU only (its other threads keep theirs); idle, the thread gets its CPUs back;
 * with affinity=off it is never moved. The client runs in a child process; every mount
 * is undone in teardown.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { daemonsFor, waitFor } from '../lib/proc';

const BIN = path.resolve(__dirname, '..', '..', 'bin', 'stratafs');

/** Cpus_allowed_list of thread `tid` of process `pid` */
function allowed(pid: number, tid = pid): string {
  const m = /^Cpus_allowed_list:\s*(\S+)$/m.exec(fs.readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8'));
  return m?.[1] ?? '';
}

const isMounted = (mnt: string): boolean =>
  fs.readFileSync('/proc/mounts', 'utf8').split('\n').some((l) => l.split(' ')[1] === mnt);

/** mounts a fresh overlay with `extra` options; its daemon's pid */
function mount(t: tap.Test, extra: string): { mnt: string; pid: number } {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'stratafs-affinity-'));
  const [lower, upper, work, mnt] = ['lower', 'upper', 'work', 'mnt'].map((d) => path.join(root, d)) as [string, string, string, string];
  for (const d of [lower, upper, work, mnt]) fs.mkdirSync(d);
  t.teardown(() => {
    for (let i = 0; i < 3 && isMounted(mnt); i++) {
      spawnSync('fusermount3', ['-u', '-z', mnt]);
      if (isMounted(mnt)) spawnSync('umount', ['-l', mnt]);
    }
    for (const pid of daemonsFor(mnt)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    fs.rmSync(root, { recursive: true, force: true });
  });
  const r = spawnSync(BIN, ['-o', `lowerdir=${lower},upperdir=${upper},workdir=${work}${extra}`, mnt], { encoding: 'utf8', timeout: 30_000 });
  if (r.status !== 0) throw new Error(`mount failed: ${r.stderr}`);
  const pids = daemonsFor(mnt);
  if (pids.length !== 1) throw new Error(`expected one daemon, found ${pids.length}`);
  return { mnt, pid: pids[0] as number };
}

/** `taskset -c CPU`: a shell testing `n` names that do not exist, one LOOKUP each */
function lookups(mnt: string, cpu: number, n: number): void {
  const r = spawnSync('taskset', ['-c', String(cpu), 'bash', '-c', 'cd "$1" && i=0; while [ $i -lt "$2" ]; do [ -e "miss-$i" ]; i=$((i+1)); done; true', '-', mnt, String(n)],
    { encoding: 'utf8', timeout: 120_000 });
  if (r.status !== 0) throw new Error(`lookups failed: ${r.stderr}`);
}

const cpus = fs.readFileSync(`/proc/${process.pid}/status`, 'utf8');
const mine = /^Cpus_allowed_list:\s*(\S+)$/m.exec(cpus)?.[1] ?? '';
const hasTaskset = spawnSync('taskset', ['--version']).status === 0;
// the client's CPU: the last one this process (and so the daemon) may use
const last = Number(mine.split(/[,-]/).pop());
const skip = !hasTaskset ? 'taskset is not installed' : !/[,-]/.test(mine) ? `one CPU only (${mine})` : false;

t.test('a client pinned to one CPU: the daemon\'s main thread runs there, then gets its CPUs back when idle', { skip }, async (t) => {
  const { mnt, pid } = mount(t, '');
  const before = fs.readdirSync(`/proc/${pid}/task`).map((tid) => [tid, allowed(pid, Number(tid))]);
  t.equal(allowed(pid), mine, 'unpinned after the mount');
  lookups(mnt, last, 4000);
  t.equal(allowed(pid), String(last), `main thread on the client's CPU ${last}`);
  for (const [tid, list] of before) {
    if (Number(tid) !== pid && fs.existsSync(`/proc/${pid}/task/${tid}`)) t.equal(allowed(pid, Number(tid)), list, `thread ${tid} keeps its CPUs`);
  }
  t.ok(await waitFor(() => allowed(pid) === mine, 10_000), `idle: back to ${mine} (now ${allowed(pid)})`);
});

t.test('affinity=off: the daemon\'s thread is never moved', { skip }, async (t) => {
  const { mnt, pid } = mount(t, ',affinity=off');
  lookups(mnt, last, 4000);
  t.equal(allowed(pid), mine);
});

t.test('a daemon the caller pinned to one CPU stays there', { skip }, async (t) => {
  const { mnt, pid } = mount(t, '');
  const other = Number(mine.split(/[,-]/)[0]);
  spawnSync('taskset', ['-a', '-p', '-c', String(other), String(pid)]);
  t.equal(allowed(pid), String(other));
  lookups(mnt, last, 4000);
  t.equal(allowed(pid), String(other), `still on CPU ${other}, not the client's ${last}`);
});
