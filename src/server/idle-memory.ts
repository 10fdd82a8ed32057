/**
 * Giving memory back once a busy daemon goes idle.
 *
 * Measured on a mount after a few minutes of mixed work and a cache drop (the kernel
 * forgot every node): V8's young generation had grown to its limit (two 16 MiB
 * semispaces) and stayed there, garbage Buffers held their malloc'd backing stores, and
 * glibc kept the freed blocks in its arenas; none of it went back in minutes of idleness
 * (V8 collects only when JS allocates, and Node gives it no idle time). A full
 * collection then shrinks the young generation and frees those Buffers, and
 * malloc_trim(0) returns the arenas' free pages: RSS fell by about 40 MiB.
 *
 * So once per burst of work: every `intervalMs` (an unref'd timer) the utilization of the
 * last interval (the process's CPU time over the wall time) is read; an interval above
 * `busy` marks a burst, and the first interval below `idle` after one, with RSS grown by
 * `minGrowthMiB` since the last release, runs a full collection, then, once V8's
 * background threads have freed what it released, malloc_trim. A busy daemon is never
 * interrupted; an idle one pays one collection (milliseconds for a heap of tens of MiB)
 * per burst.
 *
 * Every mount's end also asks for a release a second later, without the growth test
 * (mountEnded): what the mount held is garbage now, and a daemon whose last mount just
 * ended is measured (and judged) right then. Where other mounts are still served, the
 * end only marks the next idle interval's release as due without growth: a collection
 * between two busy mounts (the steps of a `podman build`) threw away the request
 * path's optimised code (V8 deoptimises code whose embedded maps died with the ended
 * mount's objects), and the next mount's requests ran unoptimised until it was
 * compiled again (README "What each lever gave").
 *
 * Process-wide: the MountServer holds it while it serves at least one mount. When the
 * last mount ends the releaser settles rather than stops: the work that mount did counts
 * as a burst, and the timer runs until an idle interval has released it (or found it
 * not worth a collection). Stopping at once left a `stratafs daemon` that had served a
 * walk of 73k entries at 252 MiB RSS after its mounts were gone, for good. The interval
 * is STRATAFS_IDLE_MEMORY_MS (default 10 s; tests shorten it).
 *
 * Nothing a timer runs may throw out of it: an uncaught error ends the process and every
 * mount it serves (under fd pressure process.memoryUsage() itself fails with EMFILE), so
 * an interval that fails is logged and skipped.
 */
import createDebug from 'debug';
import { native } from '../native';

const log = createDebug('stratafs:memory');

export interface IdleReleaseOptions {
  intervalMs?: number;
  /** utilization (0..1) of an interval at or above which it counts as work */
  busy?: number;
  /** utilization below which an interval counts as idle */
  idle?: number;
  /** RSS growth since the last release (MiB) below which nothing is done */
  minGrowthMiB?: number;
  /** the probes and actions (tests replace them) */
  utilization?: () => number;
  rssBytes?: () => number;
  collect?: () => void;
  trim?: () => void;
  /** runs `f` once V8's background freeing is done (default: after 1 s) */
  later?: (f: () => void) => void;
  /** runs `f` shortly after a mount ended (default: after 1 s, unref'd) */
  soon?: (f: () => void) => void;
}

/**
 * A full, compacting collection without --expose-gc: V8 gives `gc` to contexts made while
 * the flag is set. A plain full collection frees the dead objects but keeps the old
 * generation's pages committed wherever one live object remains, and after a tree walk
 * the survivors (a mount's caches, the nodes the kernel still holds) are spread over all
 * of them: heap used 33 MiB of 87 MiB committed after one. Compacting moves them together
 * and gives the emptied pages back (the same daemon: 33 of 35 MiB, RSS 134 -> 101 MiB).
 */
function fullCollection(): () => void {
  // node:v8 (which loads the stream modules) and node:vm are loaded once a release is
  // due, not at every daemon start (README, Performance: start-up)
  /* eslint-disable @typescript-eslint/no-require-imports */
  const v8 = require('node:v8') as typeof import('node:v8');
  const vm = require('node:vm') as typeof import('node:vm');
  /* eslint-enable @typescript-eslint/no-require-imports */
  const exposed = (globalThis as { gc?: () => void }).gc;
  let gc = exposed;
  if (!gc) {
    v8.setFlagsFromString('--expose-gc');
    gc = vm.runInNewContext('gc') as () => void;
    v8.setFlagsFromString('--no-expose-gc');
  }
  const collect = gc;
  return () => {
    v8.setFlagsFromString('--compact-on-every-full-gc');
    try {
      collect();
    } finally {
      v8.setFlagsFromString('--no-compact-on-every-full-gc');
    }
  };
}

/**
 * The process's CPU time over the wall time since the last call. Not the event loop's
 * utilization: the FUSE reader turns off the loop's idle-time metrics (one poll per sleep
 * instead of two, transport.ts), after which that utilization reads 1 whatever the load.
 * The thread pool's CPU counts too: work all the same.
 */
export function cpuUtilization(): () => number {
  let lastCpu = process.cpuUsage();
  // wall time in ms from the monotonic clock (no perf_hooks: scripts/bundle.mjs)
  let lastWall = process.uptime() * 1000;
  return () => {
    const cpu = process.cpuUsage();
    const wall = process.uptime() * 1000;
    const usedMs = (cpu.user - lastCpu.user + cpu.system - lastCpu.system) / 1000;
    const u = usedMs / Math.max(wall - lastWall, 1);
    lastCpu = cpu;
    lastWall = wall;
    return u;
  };
}

/** the interval from STRATAFS_IDLE_MEMORY_MS, or the default */
export function intervalFromEnv(env: NodeJS.ProcessEnv = process.env): number {
  const ms = Number(env.STRATAFS_IDLE_MEMORY_MS);
  return Number.isFinite(ms) && ms >= 10 ? ms : 10_000;
}

export class IdleRelease {
  private readonly o: Required<Omit<IdleReleaseOptions, 'collect'>> & { collect?: () => void };
  private busySince = false;
  private baseline: number;
  private timer: NodeJS.Timeout | undefined;
  private pending = false;
  /** a mount ended since the last release: the next idle interval releases without growth */
  private endedSince = false;
  /** the last holder let go: stop once the last burst is released or found not worth it */
  private settling = false;
  /** releases done so far */
  releases = 0;
  /** timer runs that failed (logged and skipped) */
  failures = 0;

  constructor(options: IdleReleaseOptions = {}) {
    this.o = {
      intervalMs: intervalFromEnv(),
      busy: 0.05,
      idle: 0.01,
      minGrowthMiB: 4,
      utilization: cpuUtilization(),
      rssBytes: () => process.memoryUsage.rss(),
      trim: () => native.mallocTrim(),
      later: (f) => setTimeout(f, 1000).unref(),
      soon: (f) => setTimeout(f, 1000).unref(),
      ...options,
    };
    this.baseline = this.o.rssBytes();
  }

  start(): void {
    this.settling = false;
    if (this.timer !== undefined) return;
    this.timer = setInterval(() => this.safely('check', () => this.check()), this.o.intervalMs);
    this.timer.unref();
  }

  /** runs a timer's work; a failure is logged (and the release state reset), never thrown */
  private safely(what: string, f: () => unknown): void {
    try {
      f();
    } catch (e) {
      this.pending = false;
      this.failures++;
      log('idle %s failed: %s', what, (e as Error).message);
    }
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }

  /**
   * No more work is coming (the last mount ended): what it did counts as a burst; the
   * next idle interval releases it, and then the timer stops.
   */
  settle(): void {
    if (this.timer === undefined) return;
    this.settling = true;
    this.busySince = true;
  }

  /**
   * A mount ended: its session, inode table and caches just became garbage, which RSS
   * does not show until a collection, so the growth test of check() would miss it (a
   * daemon released after a cache drop, its mount then ended: 33 MiB of dead heap held
   * until the next burst). A second later, if that second was idle, release regardless
   * of growth; if it was not, the mount's end counts as work and the timer's next idle
   * interval releases it.
   *
   * `othersServed`: the process still serves other mounts. Then nothing runs a second
   * later: the next idle interval of the timer releases, growth or not. A daemon serving
   * a build goes from one mount to the next within that second, and a collection there
   * cost the next mount's walk more CPU (its code optimised again).
   */
  mountEnded(othersServed = false): void {
    this.busySince = true;
    if (othersServed) {
      this.endedSince = true;
      return;
    }
    this.o.utilization(); // the next reading covers the second from now on
    this.o.soon(() => this.safely('check', () => this.check(true)));
  }

  get running(): boolean {
    return this.timer !== undefined;
  }

  /** settling, and the burst is dealt with: nothing more to watch */
  private settled(): void {
    if (this.settling) this.stop();
  }

  /**
   * One interval's look (the timer calls it). True when it started a release. `ended`:
   * a mount ended since the last look, so no growth is needed (see mountEnded).
   */
  check(ended = this.endedSince): boolean {
    const u = this.o.utilization();
    if (u >= this.o.busy) this.busySince = true;
    if (this.pending || u >= this.o.idle) return false;
    if (!this.busySince) {
      this.settled();
      return false;
    }
    const rss = this.o.rssBytes();
    if (!ended && rss - this.baseline < this.o.minGrowthMiB * 1024 * 1024) {
      this.busySince = false; // this burst left nothing worth a collection
      this.settled();
      return false;
    }
    this.busySince = false;
    this.endedSince = false;
    this.pending = true;
    const collect = this.o.collect ?? (this.o.collect = fullCollection());
    collect();
    this.o.later(() => this.safely('release', () => {
      this.o.trim();
      this.pending = false;
      this.releases++;
      const after = this.o.rssBytes();
      log('idle after work: RSS %d -> %d MiB', Math.round(rss / 1048576), Math.round(after / 1048576));
      this.baseline = after;
      this.settled();
    }));
    return true;
  }
}

let shared: IdleRelease | undefined;
let holders = 0;

/** The process-wide IdleRelease (made by the first hold). */
export function sharedIdleRelease(): IdleRelease | undefined {
  return shared;
}

/**
 * Keeps the process-wide IdleRelease running until the returned function is called; after
 * the last holder it settles (releases what the last burst left once idle, then stops).
 */
export function holdIdleRelease(): () => void {
  if (holders++ === 0) (shared ??= new IdleRelease()).start();
  let held = true;
  return () => {
    if (!held) return;
    held = false;
    if (--holders === 0) shared?.settle();
    shared?.mountEnded(holders > 0);
  };
}
