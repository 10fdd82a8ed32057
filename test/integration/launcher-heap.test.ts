/**
 * The node flags bin/stratafs starts every daemon with (the young generation's bound,
 * README "What each lever gave"): a mount's own daemon and `stratafs daemon` both run
 * with them. The figures behind the value live in benchmarks, not here.
 */
import t from 'tap';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { daemonsFor, plainExec, runOk, spawnListening, waitFor } from '../lib/proc';
import { scratchLayers } from '../lib/tmp';

const LAUNCHER = path.resolve(__dirname, '..', '..', 'bin', 'stratafs');
const FLAG = '--max-semi-space-size=2';

const ARENAS = '2';
/** the test's environment without a MALLOC_ARENA_MAX of its own */
const ENV: NodeJS.ProcessEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== 'MALLOC_ARENA_MAX'));

function envOf(pid: number): Map<string, string> {
  const pairs = fs.readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').filter((kv) => kv.includes('='));
  return new Map(pairs.map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
}

function argvOf(pid: number): string[] {
  return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
}

t.test("a mount's own daemon runs with the launcher's heap flag", async (t) => {
  const { mnt, layerOption } = await scratchLayers(t, 'heapflag');
  await runOk(...plainExec([LAUNCHER, '-o', layerOption, mnt]), { env: ENV, timeoutMs: 20000 });
  const [pid] = daemonsFor(mnt);
  t.ok(pid !== undefined, 'the daemon serving the mount was found');
  if (pid !== undefined) {
    t.ok(argvOf(pid).includes(FLAG), `node started with ${FLAG}: ${argvOf(pid).join(' ')}`);
    t.equal(envOf(pid).get('MALLOC_ARENA_MAX'), ARENAS, `malloc's arenas bounded to ${ARENAS}`);
  }
  await runOk('fusermount3', ['-u', mnt]);
  t.ok(await waitFor(() => daemonsFor(mnt).length === 0, 10000), 'the daemon exits after the unmount');
});

t.test('`stratafs daemon` runs with the same flag', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stratafs-heapflag-d-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const [cmd, args] = plainExec([LAUNCHER, 'daemon', '--socket', path.join(dir, 'sock')]);
  const d = await spawnListening(t, 'stratafs daemon', cmd, args, { env: ENV });
  // env execs the launcher, which execs node: the pid is node's
  t.ok(argvOf(d.child.pid!).includes(FLAG), `node started with ${FLAG}: ${argvOf(d.child.pid!).join(' ')}`);
  t.equal(envOf(d.child.pid!).get('MALLOC_ARENA_MAX'), ARENAS, `malloc's arenas bounded to ${ARENAS}`);
});

t.test('a MALLOC_ARENA_MAX the caller set is kept', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stratafs-heapflag-e-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const [cmd, args] = plainExec([LAUNCHER, 'daemon', '--socket', path.join(dir, 'sock')]);
  const d = await spawnListening(t, 'stratafs daemon', cmd, args, { env: { ...ENV, MALLOC_ARENA_MAX: '4' } });
  t.equal(envOf(d.child.pid!).get('MALLOC_ARENA_MAX'), '4');
});
