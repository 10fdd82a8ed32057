/**
 * The `build` workload of the podman benchmark: `podman build` of a Containerfile whose
 * RUN steps create thousands of files, delete and rename trees of the lower (image)
 * layers and append to lower files, over the Debian minbase rootfs the container tests
 * make (imported as the base image), with a fresh build (--no-cache) each time. Each
 * RUN step is a new container, so a new mount of the stack built so far, then a commit
 * that walks its upper: mounting, cold walks and copy-up are what it measures.
 *
 * Setups: stratafs as mount_program (a daemon per mount), stratafs through one running
 * daemon (mountopt server=), fuse-overlayfs as mount_program, and podman's own kernel
 * overlay driver. Goals (issue 11): stratafs no slower than fuse-overlayfs, within 2×
 * of the kernel driver.
 */
import type { ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describeFailure, ok, type ChildResult } from './proc';
import { cleanup, podman, startDaemon, writeStore } from './podman-store';
import { median } from './stats';

const BASE = 'localhost/stratafs-bench/debian:1';
const OUT = 'localhost/stratafs-bench/built:1';

/** files the first step creates: DIRS dirs of FILES files */
const DIRS = 40;
const FILES = 100;

/*
 * The last step's list names /entries itself: the file is made before `find` starts.
 * With `find / -xdev | sort > /entries` alone, the shell opens /entries in the pipeline's
 * second process while find reads /, and whichever comes first decides whether the list
 * holds /entries (the kernel driver lost that race in 9 of 25 builds, one entry fewer).
 */
export const CONTAINERFILE = `FROM ${BASE}
RUN mkdir /opt/gen && cd /opt/gen && for d in $(seq ${DIRS}); do mkdir d$d && for f in $(seq ${FILES}); do echo "$d/$f" > d$d/f$f; done; done
RUN rm -rf /usr/share/locale /usr/share/zoneinfo && mv /usr/share/man /usr/share/man.old && mv /usr/lib/x86_64-linux-gnu/gconv /usr/lib/gconv.moved
RUN for f in /etc/*.conf /etc/passwd /etc/group /usr/share/common-licenses/*; do echo "# appended" >> "$f"; done && cat /var/lib/dpkg/status >> /var/lib/dpkg/status-old
RUN tar -C /opt -cf /tmp/gen.tar gen && rm -rf /opt/gen && mkdir /opt/copy && tar -C /opt/copy -xf /tmp/gen.tar && rm /tmp/gen.tar
RUN : > /entries && find / -xdev | sort > /entries && ls -lR /usr/share/doc > /dev/null
`;

export interface BuildSetup {
  name: string;
  /** mount_program; empty for the kernel overlay driver */
  program: string;
  daemon?: boolean;
}

export interface BuildOptions {
  reps: number;
  scratch: string;
  rootfs: string;
  setups: BuildSetup[];
}

async function must(what: string, p: Promise<ChildResult>): Promise<ChildResult> {
  const r = await p;
  if (!ok(r)) throw new Error(describeFailure(what, r));
  return r;
}

/**
 * What the builds' last step saw (`find / -xdev`, one list per build, named NAMES) where
 * the lists differ: the count of each build, then each path some builds lack and which
 * builds have it. Nothing when they all agree.
 */
export function entryDifferences(names: string[], lists: string[][]): string[] {
  const sets = lists.map((l) => new Set(l));
  const all = [...new Set(lists.flat())].sort();
  const differing = all.filter((p) => sets.some((s) => !s.has(p)));
  if (differing.length === 0) return [];
  const out = [`note: the builds disagree on the entries of the image: ${names.map((n, i) => `${n} ${lists[i].length}`).join(', ')}`];
  for (const p of differing.slice(0, 50)) out.push(`  ${p}: only in ${names.filter((_n, i) => sets[i].has(p)).join(', ')}`);
  if (differing.length > 50) out.push(`  ... ${differing.length - 50} more`);
  return out;
}

export async function runBuild(o: BuildOptions, log: (s: string) => void): Promise<void> {
  if (!fs.existsSync(o.rootfs)) throw new Error(`no rootfs tarball at ${o.rootfs} (the container tests make it; or --rootfs=TAR)`);
  fs.mkdirSync(o.scratch, { recursive: true });
  // short paths: podman 4.3 is slow with long store paths (see podman.ts)
  const dir = fs.mkdtempSync(path.join(o.scratch, 'sfbld-'));
  const sock = path.join(dir, 'd.sock');
  const ctx = path.join(dir, 'ctx');
  fs.mkdirSync(ctx);
  fs.writeFileSync(path.join(ctx, 'Containerfile'), CONTAINERFILE);
  const envs = o.setups.map((s, i) => writeStore(path.join(dir, String(i)), s.program, s.daemon ? `server=${sock}` : undefined));
  const stratafs = o.setups.find((s) => s.daemon)?.program;
  let daemon: ChildProcess | undefined;
  try {
    if (stratafs) daemon = await startDaemon(stratafs, sock);
    const build = ['build', '--network', 'none', '--pull=never', '--no-cache', '--quiet', '-t', OUT, '-f', path.join(ctx, 'Containerfile'), ctx];
    // every build's view of its image (the last step's `find`), checked after the run
    const seen: { name: string; list: string[] }[] = [];
    // (copied out through a bind mount: run() keeps only the tail of a long stdout)
    const lists = path.join(dir, 'lists');
    fs.mkdirSync(lists);
    const record = async (i: number, what: string): Promise<void> => {
      const file = String(seen.length);
      await must('entries', podman(envs[i], ['run', '--rm', '--network', 'none', '--pull', 'never', '-v', `${lists}:/lists`, OUT, 'cp', '/entries', `/lists/${file}`]));
      const list = fs.readFileSync(path.join(lists, file), 'utf8').split('\n').filter((l) => l !== '');
      seen.push({ name: `${o.setups[i].name} (${what})`, list });
      await podman(envs[i], ['rmi', '--force', OUT]);
      await podman(envs[i], ['image', 'prune', '--force']);
    };
    for (const [i, env] of envs.entries()) {
      await must('podman import', podman(env, ['import', '--quiet', o.rootfs, BASE]));
      log(`warm-up build (${o.setups[i].name})`);
      await must(`warm-up build (${o.setups[i].name})`, podman(env, build));
      await record(i, 'warm-up');
    }
    const times: number[][] = o.setups.map(() => []);
    for (let rep = 0; rep < o.reps; rep++) {
      const n = o.setups.length;
      for (let k = 0; k < n; k++) {
        const i = (k + rep) % n;
        const r = await must(`podman build (${o.setups[i].name})`, podman(envs[i], build));
        times[i].push(r.seconds);
        log(`rep ${rep + 1}/${o.reps}  ${o.setups[i].name.padEnd(20)} ${r.seconds.toFixed(2)} s`);
        await record(i, `rep ${rep + 1}`);
      }
    }
    const differences = entryDifferences(seen.map((b) => b.name), seen.map((b) => b.list));
    for (const line of differences) log(line);
    if (differences.length === 0) log(`the ${seen.length} builds agree on the entries of the image (${seen[0]?.list.length ?? 0})`);
    const med = times.map((t) => median(t) ?? 0);
    const by = (name: string): number | undefined => med[o.setups.findIndex((s) => s.name === name)];
    console.log(`podman build of a ${CONTAINERFILE.split('\n').filter((l) => l.startsWith('RUN')).length}-step Containerfile over the Debian minbase image, --no-cache, ${o.reps} builds each, alternated (seconds)`);
    console.log(`${'setup'.padEnd(22)}${'median'.padStart(8)}${'best'.padStart(8)}${'/ fuse-ovl'.padStart(11)}${'/ kernel'.padStart(9)}`);
    const fo = by('fuse-overlayfs');
    const kernel = by('kernel');
    for (const [i, s] of o.setups.entries()) {
      const r = (x: number | undefined): string => (x ? (med[i] / x).toFixed(2) : '-');
      console.log(`${s.name.padEnd(22)}${med[i].toFixed(2).padStart(8)}${Math.min(...times[i]).toFixed(2).padStart(8)}${r(fo).padStart(11)}${r(kernel).padStart(9)}`);
    }
    console.log('goals: stratafs / fuse-overlayfs ≤ 1, stratafs / kernel ≤ 2');
  } finally {
    await cleanup(dir, envs, daemon);
  }
}
