/**
 * Serving requests on the CPU their client runs on: the daemon's JS thread (only that
 * thread; libuv's pool threads, which do the read-ahead and big copy-ups, keep their
 * CPUs) moves its CPU affinity to the CPU its clients send from, and back to every CPU
 * it was allowed when they spread or go quiet.
 *
 * Why: on a 2-vCPU VM an idle round trip between the client and the daemon costs about
 * five times as much when they are on two vCPUs as on one (README "Per request"): the
 * request wakes a halted vCPU and runs there cache-cold. A FUSE request's header names
 * the thread that sent it, and while that thread waits for the reply, field 39 of
 * /proc/TID/task/TID/stat is the CPU it sent from.
 *
 * The policy (AffinityPolicy) is pure: CPU samples and times in, pin/release decisions
 * out. ThreadAffinity samples one request in SAMPLE_EVERY, applies the decisions with
 * sched_setaffinity on the JS thread (the addon's setThreadAffinity) and releases after IDLE_MS without a sample. It is
 * one per process: every mount a daemon serves shares its one JS thread, so the clients
 * of all its mounts (those not mounted with affinity=off) are sampled together, and
 * clients of two mounts on two CPUs keep the thread unpinned.
 *
 * The caller's mask is respected: only CPUs the thread was allowed when it started (or
 * when someone else last changed its mask, e.g. `taskset -p`) are chosen, and a thread
 * allowed a single CPU is left alone.
 */
import * as fs from 'node:fs';

export type AffinityDecision = { kind: 'pin'; cpu: number } | { kind: 'release' } | undefined;

export interface AffinityPolicyOptions {
  /** samples in a row on one CPU before pinning; also the window that tells spread */
  streak: number;
  /** samples further apart than this (ms) do not make a streak: requests are not fast */
  gapMs: number;
  /** release after this long (ms) without a sample */
  idleMs: number;
}

export const DEFAULT_POLICY: AffinityPolicyOptions = { streak: 4, gapMs: 100, idleMs: 1000 };

/**
 * Decides from samples of the clients' CPUs. Unpinned, it pins to CPU c once the last
 * `streak` samples, each within `gapMs` of the one before, were all on c and c is
 * allowed. Pinned to c, it releases when 2 of the last `streak` samples were elsewhere
 * (the clients spread, or moved: a new streak then pins again), or when no sample came
 * for `idleMs`. With at most one allowed CPU it never decides anything.
 */
export class AffinityPolicy {
  private allowedCpus: Set<number>;
  private readonly recent: number[] = [];
  private lastAt = -Infinity;
  private pinnedCpu: number | undefined;

  constructor(allowed: readonly number[], private readonly opts: AffinityPolicyOptions = DEFAULT_POLICY) {
    this.allowedCpus = new Set(allowed);
  }

  /** the CPU decided on, or undefined (every allowed CPU) */
  get pinned(): number | undefined {
    return this.pinnedCpu;
  }

  /** the thread's mask changed from outside: choose among these from now on, unpinned */
  reset(allowed: readonly number[]): void {
    this.allowedCpus = new Set(allowed);
    this.recent.length = 0;
    this.pinnedCpu = undefined;
  }

  /** a client was last on `cpu` at time `now` (ms) */
  sample(cpu: number, now: number): AffinityDecision {
    if (this.allowedCpus.size <= 1) return undefined;
    if (now - this.lastAt > this.opts.gapMs) this.recent.length = 0;
    this.lastAt = now;
    this.recent.push(cpu);
    if (this.recent.length > this.opts.streak) this.recent.shift();
    const pinned = this.pinnedCpu;
    if (pinned !== undefined) {
      let away = 0;
      for (const c of this.recent) if (c !== pinned) away++;
      if (away < 2) return undefined;
      this.pinnedCpu = undefined;
      return { kind: 'release' };
    }
    if (this.recent.length < this.opts.streak || !this.allowedCpus.has(cpu)) return undefined;
    for (const c of this.recent) if (c !== cpu) return undefined;
    this.pinnedCpu = cpu;
    return { kind: 'pin', cpu };
  }

  /** ms from `now` until check() may release (undefined when not pinned) */
  idleDue(now: number): number | undefined {
    if (this.pinnedCpu === undefined) return undefined;
    return Math.max(0, this.lastAt + this.opts.idleMs - now);
  }

  /** releases when pinned and no sample came for idleMs */
  check(now: number): AffinityDecision {
    if (this.pinnedCpu === undefined || now - this.lastAt < this.opts.idleMs) return undefined;
    this.pinnedCpu = undefined;
    this.recent.length = 0;
    return { kind: 'release' };
  }
}

/** What ThreadAffinity needs from the system (fakes in tests). */
export interface AffinityOps {
  /** the CPUs the calling (JS) thread may run on */
  getMask(): number[];
  setMask(cpus: number[]): void;
  /** the CPU thread `tid` last ran on, or undefined when it cannot be read */
  taskCpu(tid: number): number | undefined;
  now(): number;
}

/** one request in this many is sampled */
export const SAMPLE_EVERY = 64;

const sameMask = (a: readonly number[], b: readonly number[]): boolean =>
  a.length === b.length && a.every((c, i) => c === b[i]);

export class ThreadAffinity {
  /** requests since the last sample */
  private pending = 0;
  private base: number[] | undefined;
  /** the mask this object last set (to tell a change made from outside) */
  private lastSet: number[] | undefined;
  private policy: AffinityPolicy | undefined;
  private timer: NodeJS.Timeout | undefined;
  private failed = false;

  constructor(private readonly ops: AffinityOps, private readonly opts: AffinityPolicyOptions = DEFAULT_POLICY,
    private readonly log: (fmt: string, ...args: unknown[]) => void = () => undefined) {}

  /** the CPU the thread is pinned to by this object, or undefined */
  get pinned(): number | undefined {
    return this.policy?.pinned;
  }

  /** `n` more requests came: true when one of them is to be sampled (one in SAMPLE_EVERY) */
  due(n: number): boolean {
    if ((this.pending += n) < SAMPLE_EVERY) return false;
    this.pending = 0;
    return true;
  }

  /** a request from thread `tid` (the request header's pid; 0: the kernel's own) */
  sample(tid: number): void {
    if (tid <= 0 || this.failed) return;
    const cpu = this.ops.taskCpu(tid);
    if (cpu === undefined) return;
    const mask = this.currentMask();
    if (!mask) return;
    if (!this.policy) {
      this.base = mask;
      this.lastSet = mask;
      this.policy = new AffinityPolicy(mask, this.opts);
    } else if (!sameMask(mask, this.lastSet ?? [])) {
      // changed from outside (taskset -p): that is the caller's mask from now on
      this.log('affinity: mask changed from outside to [%s]', mask.join(','));
      this.base = mask;
      this.lastSet = mask;
      this.policy.reset(mask);
      this.disarm();
    }
    this.apply(this.policy.sample(cpu, this.ops.now()));
  }

  private apply(d: AffinityDecision): void {
    if (!d) return;
    const mask = d.kind === 'pin' ? [d.cpu] : (this.base ?? []);
    try {
      this.ops.setMask(mask);
    } catch (e) {
      this.fail(e);
      return;
    }
    this.lastSet = mask;
    this.log('affinity: %s', d.kind === 'pin' ? `pinned to CPU ${d.cpu}` : `released to [${mask.join(',')}]`);
    if (d.kind === 'pin') this.arm();
    else this.disarm();
  }

  private arm(): void {
    if (this.timer) return;
    const due = this.policy?.idleDue(this.ops.now());
    if (due === undefined) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      const policy = this.policy;
      if (!policy || this.failed) return;
      const mask = this.currentMask();
      if (!mask) return;
      // changed from outside since: left as it is (the next sample adopts it)
      if (!sameMask(mask, this.lastSet ?? [])) return;
      const d = policy.check(this.ops.now());
      if (d) this.apply(d);
      else this.arm();
    }, due + 1);
    this.timer.unref();
  }

  private disarm(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** the mask cannot be read or set (a seccomp filter, an odd kernel): stop trying */
  /** the thread's mask now; undefined (and the lever stopped) when it cannot be read */
  private currentMask(): number[] | undefined {
    try {
      return this.ops.getMask();
    } catch (e) {
      this.fail(e);
      return undefined;
    }
  }

  private fail(e: unknown): void {
    this.failed = true;
    this.disarm();
    this.log('affinity: left alone (%s)', (e as Error).message);
  }
}

let shared: ThreadAffinity | undefined;

/** the process's one ThreadAffinity over the addon (loaded on first use) */
export function threadAffinity(log?: (fmt: string, ...args: unknown[]) => void): ThreadAffinity {
  if (!shared) {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { native } = require('../../native') as typeof import('../../native');
    // libuv starts its pool threads on the first job, as copies of the thread that queued
    // it: one job now, so they start with the thread's own mask, never a pinned one
    fs.access('/', () => undefined);
    shared = new ThreadAffinity({
      getMask: () => native.threadAffinity(),
      setMask: (cpus) => native.setThreadAffinity(cpus),
      taskCpu: (tid) => {
        const cpu = native.taskCpu(tid);
        return cpu < 0 ? undefined : cpu;
      },
      now: () => process.uptime() * 1000,
    }, DEFAULT_POLICY, log);
  }
  return shared;
}
