/**
 * The CPU-affinity policy (src/fuse/bridge/affinity.ts): client CPU samples and times in,
 * pin/release decisions out; and ThreadAffinity over fake system calls (no thread of
 * this process is moved).
 */
import t from 'tap';
import { AffinityPolicy, ThreadAffinity, type AffinityDecision, type AffinityOps } from '../../src/fuse/bridge/affinity';

const OPTS = { streak: 4, gapMs: 100, idleMs: 1000 };

/** feeds [cpu, time] samples; returns the decisions that were made, with their sample's index */
function feed(p: AffinityPolicy, samples: [number, number][]): [number, AffinityDecision][] {
  const out: [number, AffinityDecision][] = [];
  samples.forEach(([cpu, now], i) => {
    const d = p.sample(cpu, now);
    if (d) out.push([i, d]);
  });
  return out;
}

t.test('pins after `streak` samples in a row on one CPU, not before', async (t) => {
  const p = new AffinityPolicy([0, 1], OPTS);
  t.same(feed(p, [[1, 0], [1, 1], [1, 2], [1, 3], [1, 4]]), [[3, { kind: 'pin', cpu: 1 }]]);
  t.equal(p.pinned, 1);
});

t.test('a streak broken by another CPU, or by a gap, starts again', async (t) => {
  const p = new AffinityPolicy([0, 1], OPTS);
  t.same(feed(p, [[1, 0], [1, 1], [1, 2], [0, 3], [1, 4], [1, 5], [1, 6]]), [], 'broken by CPU 0');
  t.same(feed(p, [[1, 7]]), [[0, { kind: 'pin', cpu: 1 }]], 'four on CPU 1 since');
  const q = new AffinityPolicy([0, 1], OPTS);
  t.same(feed(q, [[1, 0], [1, 10], [1, 20], [1, 500], [1, 510], [1, 520]]), [], 'samples 480 ms apart are no streak');
  t.same(feed(q, [[1, 530]]), [[0, { kind: 'pin', cpu: 1 }]]);
});

t.test('clients spread over CPUs in one window: never pinned; pinned, released when they spread', async (t) => {
  const p = new AffinityPolicy([0, 1], OPTS);
  const alternating: [number, number][] = Array.from({ length: 40 }, (_x, i) => [i % 2, i]);
  t.same(feed(p, alternating), [], 'two clients on two CPUs');
  t.equal(p.pinned, undefined);
  const q = new AffinityPolicy([0, 1], OPTS);
  feed(q, [[0, 0], [0, 1], [0, 2], [0, 3]]);
  t.equal(q.pinned, 0);
  t.same(feed(q, [[1, 4]]), [], 'one sample elsewhere: stays');
  t.same(feed(q, [[0, 5], [1, 6]]), [[1, { kind: 'release' }]], 'two of the last four elsewhere: released');
  t.same(feed(q, [[1, 7], [1, 8], [1, 9]]), [[2, { kind: 'pin', cpu: 1 }]], 'the clients moved to CPU 1: four there in a row, pinned there');
});

t.test('released after idleMs without a sample', async (t) => {
  const p = new AffinityPolicy([0, 1], OPTS);
  feed(p, [[1, 0], [1, 1], [1, 2], [1, 3]]);
  t.equal(p.idleDue(3), 1000);
  t.equal(p.check(500), undefined, 'not yet');
  t.same(p.check(1003), { kind: 'release' });
  t.equal(p.pinned, undefined);
  t.equal(p.idleDue(1004), undefined, 'nothing to release');
  t.same(feed(p, [[1, 2000], [1, 2001], [1, 2002]]), [], 'a new streak is needed after a release');
});

t.test('only allowed CPUs are chosen; a thread allowed one CPU is left alone', async (t) => {
  const p = new AffinityPolicy([0, 2], OPTS);
  t.same(feed(p, [[1, 0], [1, 1], [1, 2], [1, 3], [1, 4]]), [], 'CPU 1 is not allowed');
  t.same(feed(p, [[2, 5], [2, 6], [2, 7], [2, 8]]), [[3, { kind: 'pin', cpu: 2 }]]);
  const one = new AffinityPolicy([1], OPTS);
  t.same(feed(one, [[1, 0], [1, 1], [1, 2], [1, 3], [1, 4]]), [], 'caller pinned the daemon');
  t.equal(one.check(5000), undefined);
});

/** fake system: a thread mask, a clock, and the CPU each tid was last on */
function fakeOps(mask: number[], cpus: Record<number, number>) {
  const state = { mask: [...mask], now: 0, sets: [] as number[][] };
  const ops: AffinityOps = {
    getMask: () => [...state.mask],
    setMask: (c) => {
      state.mask = [...c];
      state.sets.push([...c]);
    },
    taskCpu: (tid) => cpus[tid],
    now: () => state.now,
  };
  return { state, ops };
}

const tick = (ms: number) => new Promise((r) => setTimeout(r, ms));

t.test('ThreadAffinity: pins to the client CPU, gives back the original mask when idle', async (t) => {
  const { state, ops } = fakeOps([0, 1, 2, 3], { 100: 2 });
  const a = new ThreadAffinity(ops, { streak: 3, gapMs: 100, idleMs: 5 });
  for (let i = 0; i < 3; i++) {
    state.now = i;
    a.sample(100);
  }
  t.same(state.sets, [[2]]);
  t.equal(a.pinned, 2);
  a.sample(0);
  a.sample(999);
  t.same(state.sets, [[2]], 'pid 0 (the kernel) and a gone thread are no sample');
  state.now = 100;
  await tick(30);
  t.same(state.sets, [[2], [0, 1, 2, 3]], 'released to the whole original mask');
  t.equal(a.pinned, undefined);
});

t.test('ThreadAffinity: a mask set from outside is the caller\'s from then on', async (t) => {
  const { state, ops } = fakeOps([0, 1], { 7: 1, 8: 0 });
  const a = new ThreadAffinity(ops, { streak: 2, gapMs: 100, idleMs: 1e9 });
  a.sample(7);
  a.sample(7);
  t.same(state.sets, [[1]]);
  state.mask = [0]; // taskset -p 1 PID
  for (let i = 0; i < 5; i++) a.sample(8);
  for (let i = 0; i < 5; i++) a.sample(7);
  t.same(state.sets, [[1]], 'pinned by the caller: left alone');
  t.same(state.mask, [0]);
  state.mask = [0, 1]; // taskset -p 3 PID
  a.sample(7);
  a.sample(7);
  t.same(state.sets, [[1], [1]], 'given both CPUs again: follows the client again');
});

t.test('ThreadAffinity: a failing system call stops it for good', async (t) => {
  const { state, ops } = fakeOps([0, 1], { 7: 1 });
  let calls = 0;
  ops.setMask = () => {
    calls++;
    throw Object.assign(new Error('EPERM'), { errno: 1 });
  };
  const a = new ThreadAffinity(ops, { streak: 2, gapMs: 100, idleMs: 1e9 });
  for (let i = 0; i < 10; i++) a.sample(7);
  t.equal(calls, 1);
  t.same(state.mask, [0, 1]);
});
