// IdleRelease (src/server/idle-memory.ts): one collection + malloc_trim per burst of
// work, only once the event loop is idle and RSS has grown; probes injected, so the
// decisions are checked without waiting for timers.
import t, { type Test } from 'tap';
import { IdleRelease, holdIdleRelease, intervalFromEnv, sharedIdleRelease } from '../../src/server/idle-memory';

const MiB = 1024 * 1024;

function harness(): {
  r: IdleRelease;
  calls: string[];
  set: (u: number, rssMiB: number) => void;
  flush: () => void;
  afterEnd: () => void;
} {
  let u = 0;
  let rss = 50 * MiB;
  const calls: string[] = [];
  const queued: (() => void)[] = [];
  const soon: (() => void)[] = [];
  const r = new IdleRelease({
    utilization: () => u,
    rssBytes: () => rss,
    collect: () => calls.push('collect'),
    trim: () => {
      calls.push('trim');
      rss = 55 * MiB; // what the release gave back
    },
    later: (f) => queued.push(f),
    soon: (f) => soon.push(f),
  });
  return {
    r,
    calls,
    set: (nu, nrss) => {
      u = nu;
      rss = nrss * MiB;
    },
    flush: () => {
      for (const f of queued.splice(0)) f();
    },
    afterEnd: () => {
      for (const f of soon.splice(0)) f();
    },
  };
}

t.test('a burst then an idle interval with grown RSS: collect, then trim later', async (t) => {
  const h = harness();
  h.set(0.5, 90);
  t.equal(h.r.check(), false, 'busy: nothing');
  h.set(0.3, 100);
  t.equal(h.r.check(), false, 'still busy');
  h.set(0.001, 100);
  t.equal(h.r.check(), true, 'idle after work with 50 MiB more: release');
  t.same(h.calls, ['collect'], 'the collection runs at once, the trim waits');
  t.equal(h.r.check(), false, 'no second release while one is pending');
  h.flush();
  t.same(h.calls, ['collect', 'trim']);
  t.equal(h.r.releases, 1);
  h.set(0.001, 100);
  t.equal(h.r.check(), false, 'idle again without work in between: nothing');
  h.set(0.2, 70);
  h.r.check();
  h.set(0, 70);
  t.equal(h.r.check(), true, 'the next burst: measured from what the last release left (55 MiB)');
  h.flush();
  t.equal(h.r.releases, 2);
});

t.test('no release while between busy and idle, nor when the burst left little', async (t) => {
  const h = harness();
  h.set(0.6, 100);
  h.r.check();
  h.set(0.03, 100);
  t.equal(h.r.check(), false, 'light work (between the thresholds) is not idle');
  h.set(0.005, 52);
  t.equal(h.r.check(), false, 'idle, but RSS grew by 2 MiB only');
  h.set(0.005, 100);
  t.equal(h.r.check(), false, 'that burst is done with: growth alone does not start a release');
  t.same(h.calls, []);
  h.set(0.05, 100);
  h.r.check();
  h.set(0, 100);
  t.equal(h.r.check(), true, 'a new burst does');
});

t.test('the real collection and malloc_trim run without --expose-gc and leave no global gc', async (t) => {
  t.equal((globalThis as { gc?: unknown }).gc, undefined, 'tap runs without --expose-gc');
  let u = 1;
  let rss = 0;
  const r = new IdleRelease({ utilization: () => u, rssBytes: () => rss, later: (f) => f() });
  r.check();
  u = 0;
  rss = 100 * MiB;
  t.equal(r.check(), true);
  t.equal(r.releases, 1, 'collected and trimmed');
  t.equal((globalThis as { gc?: unknown }).gc, undefined, 'gc not exposed to the program');
});

t.test('holdIdleRelease runs one shared releaser while any holder remains', async (t) => {
  const a = holdIdleRelease();
  const b = holdIdleRelease();
  t.equal(sharedIdleRelease()?.running, true, 'running while held');
  a();
  a(); // a second call of the same release does not drop b's hold
  t.equal(sharedIdleRelease()?.running, true, 'still held by b');
  b();
  t.equal(sharedIdleRelease()?.running, true, 'the last holder gone: it settles (runs on until an idle interval)');
  const c = holdIdleRelease();
  t.equal(sharedIdleRelease()?.running, true, 'a new hold keeps it running');
  c();
  sharedIdleRelease()?.stop();
});

t.test('after the last mount: the work it did is released at the next idle interval, then the timer stops', async (t) => {
  const h = harness();
  h.r.start();
  h.set(0.5, 60);
  h.r.check(); // the mount's work
  h.set(0.001, 250);
  h.r.settle();
  t.equal(h.r.running, true, 'settling: still watching');
  h.set(0.2, 250);
  t.equal(h.r.check(), false, 'busy again (a last request): no release yet');
  t.equal(h.r.running, true, 'and no stop while busy');
  h.set(0.001, 250);
  t.equal(h.r.check(), true, 'idle with 200 MiB grown: release');
  t.equal(h.r.running, true, 'running until the trim is done');
  h.flush();
  t.same(h.calls, ['collect', 'trim']);
  t.equal(h.r.running, false, 'released: stopped');

  const quiet = harness();
  quiet.r.start();
  quiet.set(0.001, 50);
  quiet.r.settle();
  t.equal(quiet.r.check(), false, 'settling with RSS not grown: no collection');
  t.same(quiet.calls, []);
  t.equal(quiet.r.running, false, 'and stopped');
});

/** a harness whose walk (busy, then idle with RSS grown) has been released */
function afterAWalk(t: Test): ReturnType<typeof harness> {
  const h = harness();
  h.set(0.5, 90);
  h.r.check();
  h.set(0.001, 90);
  t.equal(h.r.check(), true, 'the walk: released');
  h.flush();
  return h;
}

t.test('a mount that ended is released a second later, RSS grown or not, once that second is idle', async (t) => {
  const h = afterAWalk(t);
  t.equal(h.r.releases, 1);
  h.set(0.001, 56); // what the release left, plus a little: the mount's state is dead heap now
  t.equal(h.r.check(), false, 'without an end, no growth means nothing to do');
  h.r.mountEnded();
  t.same(h.calls, ['collect', 'trim'], 'nothing at once: the end waits a second');
  h.afterEnd();
  t.same(h.calls, ['collect', 'trim', 'collect'], 'a mount ended and the second was idle: collect without growth');
  h.flush();
  t.equal(h.r.releases, 2);

  const busy = harness();
  busy.r.mountEnded();
  busy.set(0.3, 56);
  busy.afterEnd();
  t.same(busy.calls, [], 'the second after the end was busy: no collection then');
  busy.set(0.001, 56);
  t.equal(busy.r.check(), true, 'the end counts as work: the next idle interval releases it');
});

t.test('a mount that ended while others are still served: no collection a second later, the next idle interval releases without growth', async (t) => {
  const h = afterAWalk(t);
  h.set(0.001, 56); // the ended mount's state is dead heap now, RSS barely grown
  h.r.mountEnded(true);
  h.afterEnd();
  t.same(h.calls, ['collect', 'trim'], 'the second after the end: no collection (the next mount keeps its optimised code)');
  h.set(0.3, 60);
  t.equal(h.r.check(), false, 'the next mount is busy: nothing');
  h.set(0.001, 60);
  t.equal(h.r.check(), true, 'idle again: released, though RSS grew less than the growth test asks');
  h.flush();
  t.same(h.calls, ['collect', 'trim', 'collect', 'trim']);
  h.set(0.5, 57);
  h.r.check();
  h.set(0.001, 57); // 2 MiB over what the release left
  t.equal(h.r.check(), false, 'that end is dealt with: the growth test is back');
});

t.test('an error in the timer (EMFILE under fd pressure) is logged and skipped, never thrown', async (t) => {
  let u = 0.5;
  let probes = 0;
  const r = new IdleRelease({
    intervalMs: 10,
    utilization: () => {
      const now = u;
      u = u > 0 ? 0 : 0.5; // a burst, then an idle interval, again and again
      return now;
    },
    rssBytes: () => {
      if (probes++ === 0) return 50 * MiB; // the baseline, at construction
      throw Object.assign(new Error('EMFILE: too many open files'), { code: 'EMFILE' });
    },
    collect: () => undefined,
    later: (f) => f(),
  });
  r.start();
  t.teardown(() => r.stop());
  for (let i = 0; i < 100 && r.failures < 3; i++) await new Promise((done) => setTimeout(done, 10));
  t.ok(probes >= 3, `the timer kept running (${probes} probes)`);
  t.ok(r.failures >= 3, `each failure counted (${r.failures}), none escaped`);
});

t.test('STRATAFS_IDLE_MEMORY_MS sets the interval', async (t) => {
  t.equal(intervalFromEnv({ STRATAFS_IDLE_MEMORY_MS: '250' }), 250);
  t.equal(intervalFromEnv({}), 10_000, 'default 10 s');
  t.equal(intervalFromEnv({ STRATAFS_IDLE_MEMORY_MS: 'x' }), 10_000, 'not a number: the default');
});
