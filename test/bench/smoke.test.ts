/**
 * Smoke test of the benchmark program (benchmarks/run.ts): a tiny dataset, one
 * repetition, every target. It checks that the run completes, that every target ran every
 * workload and agreed on the outputs, and that the table, JSON, SVG and markdown are
 * written and well-formed. No timing is asserted: benchmarks measure, tests do not.
 * Needs the build (npm test builds first) and root, like the other mount tests.
 */
import t, { type Test } from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { WORKLOADS } from '../../benchmarks/lib/workloads';
import { mountTable, REPO_ROOT } from '../lib/mounts';
import { run } from '../lib/proc';
import { tempDir } from '../lib/tmp';
import { tagErrors } from './xml';

const RUN = path.join(REPO_ROOT, 'dist', 'benchmarks', 'run.js');
// stratafs-uring runs where the kernel has FUSE over io_uring (it switches enable_uring on
// for the run and puts it back); elsewhere the program leaves it out as unavailable
const URING = fs.existsSync('/sys/module/fuse/parameters/enable_uring');
const TARGETS = ['native', 'kernel', 'fuse-overlayfs', 'stratafs', 'stratafs-daemon', ...(URING ? ['stratafs-uring'] : [])];

interface Sample {
  seconds?: number;
  error?: string;
  output?: string;
}

/** Runs the benchmark program with tiny sizes, everything under DIR. */
function bench(dir: string, args: string[]) {
  const tiny = ['--quick', '--files=150', '--big-mib=2', '--small=20', '--list=50', '--timeout=120'];
  const where = [`--scratch=${dir}/scratch`, `--cache=${dir}/cache`, `--out=${dir}/out`, `--untar-source=${dir}/src`, `--rootfs=${dir}/rootfs.tar`];
  return run(process.execPath, [RUN, ...tiny, ...where, ...args], { timeoutMs: 240_000 });
}

/** A small directory archived by the untar workloads. */
function makeUntarSource(dir: string): void {
  for (const sub of ['a', 'b/c']) fs.mkdirSync(path.join(dir, 'src', sub), { recursive: true });
  for (let i = 0; i < 12; i++) fs.writeFileSync(path.join(dir, 'src', i % 2 ? 'a' : 'b/c', `h${i}.h`), `#define H${i} ${i}\n`);
}

/** A tiny rootfs tarball for fresh-walk, with a file in every place the split cuts. */
async function makeRootfsTar(dir: string): Promise<void> {
  const root = path.join(dir, 'rootfs');
  for (const f of ['etc/passwd', 'usr/bin/true', 'usr/share/doc/a/copyright', 'var/lib/dpkg/status', 'var/lib/apt/lists/x', 'var/log/y']) {
    fs.mkdirSync(path.dirname(path.join(root, f)), { recursive: true });
    fs.writeFileSync(path.join(root, f), `${f}\n`);
  }
  const r = await run('tar', ['--numeric-owner', '-C', root, '-cf', path.join(dir, 'rootfs.tar'), '.']);
  if (r.code !== 0) throw new Error(`tar: ${r.stderr}`);
}

async function noMountsUnder(t: Test, dir: string): Promise<void> {
  const left = [...(await mountTable()).keys()].filter((m) => m.startsWith(`${dir}/`));
  t.same(left, [], 'nothing left mounted');
  const runs = fs.readdirSync(path.join(dir, 'scratch')).filter((n) => n.startsWith('run-'));
  t.same(runs, [], 'scratch directory of the run removed');
}

t.test('the SVG check rejects what is not well-formed', async (t) => {
  t.same(tagErrors('<svg><rect x="1"/><text y="2">a &amp; b</text></svg>'), []);
  t.match(tagErrors('<svg><g><text>a</g></svg>'), ['</g> closes <text>']);
  t.match(tagErrors('<svg><text>a & b</text></svg>'), [/bare &/]);
  t.match(tagErrors('<svg><rect x=1/></svg>'), [/malformed tag/]);
  t.match(tagErrors('<svg></svg><svg></svg>'), ['2 root elements']);
  t.match(tagErrors('<svg><g></svg>'), [/closes <g>/, /unclosed: svg/]);
});

t.test('the benchmark program is built', async (t) => {
  t.ok(fs.existsSync(RUN), `${RUN} exists (npm run build)`);
});

t.test('bad input: one line, exit 2, nothing written', async (t) => {
  const dir = await tempDir(t, 'bench-bad');
  const r = await bench(dir, ['--reps=zero']);
  t.equal(r.code, 2);
  t.equal(r.stderr.trim().split('\n').length, 1, `one line: ${r.stderr}`);
  t.match(r.stderr, /--reps needs a positive integer/);
  t.notOk(fs.existsSync(path.join(dir, 'scratch')), 'no scratch directory made');
  t.notOk(fs.existsSync(path.join(dir, 'out')), 'no results written');
});

t.test('workloads on every target: table, JSON, SVG, markdown', async (t) => {
  const dir = await tempDir(t, 'bench-smoke');
  makeUntarSource(dir);
  await makeRootfsTar(dir);
  const r = await bench(dir, []);
  t.equal(r.code, 0, `exit 0; stderr tail: ${r.stderr.slice(-2000)}`);

  const header = r.stdout.split('\n').find((l) => l.startsWith('workload '));
  t.ok(header, 'table printed');
  for (const target of TARGETS) t.match(header ?? '', target, `table has a ${target} column`);
  for (const w of [...WORKLOADS.map((x) => (x.diagnostic ? `(${x.name})` : x.name)), 'geomean']) {
    t.ok(r.stdout.split('\n').some((l) => l.startsWith(`${w} `)), `table has a row for ${w}`);
  }

  const json = JSON.parse(fs.readFileSync(path.join(dir, 'out', 'latest.json'), 'utf8'));
  t.same(json.targets, TARGETS, 'every target ran');
  t.same(Object.keys(json.skipped), [], 'nothing skipped');
  t.same(json.workloads.map((w: { name: string }) => w.name), WORKLOADS.map((w) => w.name), 'every workload ran');
  for (const w of json.workloads) {
    t.same(w.mismatches, [], `${w.name}: targets agree on the outputs`);
    // workloads that time mounting need a mount command: not the plain directory
    const own = WORKLOADS.find((x) => x.name === w.name)?.ownMounts === true;
    if (own) t.equal(w.samples.native, undefined, `${w.name}: not run on native (nothing to mount)`);
    for (const target of own ? TARGETS.filter((x) => x !== 'native') : TARGETS) {
      const samples: Sample[] = w.samples[target] ?? [];
      t.equal(samples.length, 1, `${w.name} on ${target}: one sample`);
      const s = samples[0] ?? {};
      t.equal(s.error, undefined, `${w.name} on ${target}: no error`);
      t.ok(Number.isFinite(s.seconds) && (s.seconds as number) >= 0, `${w.name} on ${target}: a time`);
      t.equal(w.median[target], s.seconds, `${w.name} on ${target}: the median of one sample is that sample`);
    }
    const ratio = json.ratios.find((x: { name: string }) => x.name === w.name);
    t.ok(ratio.stratafsVsFuseOverlayfs > 0 && ratio.stratafsVsKernel > 0, `${w.name}: both ratios`);
  }
  t.ok(json.geomean.stratafsVsKernel > 0, 'geomean ratio');
  t.ok(json.geomean.daemonVsFuseOverlayfs > 0, 'geomean ratio of the shared daemon');
  const walk = json.workloads.find((w: { name: string }) => w.name === 'fresh-walk');
  t.equal(walk?.samples.stratafs?.[0]?.output, '19', 'fresh-walk: find saw the whole split rootfs (19 entries)');

  const svg = fs.readFileSync(path.join(dir, 'out', 'latest.svg'), 'utf8');
  t.same(tagErrors(svg), [], 'SVG well-formed');
  t.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
  for (const w of json.workloads) t.match(svg, `>${w.name}</text>`, `SVG labels ${w.name}`);

  const md = fs.readFileSync(path.join(dir, 'out', 'latest.md'), 'utf8');
  const rows = md.split('\n').filter((l) => l.startsWith('|'));
  t.equal(rows.length, 2 + WORKLOADS.length + 1, 'markdown: header, rule, a row per workload, geomean');
  t.ok(rows.every((l) => l.split('|').length === rows[0].split('|').length), 'markdown rows have equal columns');
  t.match(md, /stratafs-daemon faster than fuse-overlayfs on \d+ of \d+ workloads|stratafs-daemon faster than fuse-overlayfs on every workload/);
  t.match(md, /stratafs-daemon RSS after the whole run [\d.]+ MiB, after drop_caches [\d.]+ MiB \(goal ≤ 64\): \*\*(met|not met)\*\*/);
  t.ok(json.daemonMemory?.rssMiB > 0 && json.daemonMemory?.rssAfterDropMiB > 0, 'shared daemon RSS measured twice');
  t.match(md, /geometric mean stratafs \/ kernel overlayfs [\d.]+ \(goal ≤ 1\.5\): \*\*(met|not met)\*\*/);
  await noMountsUnder(t, dir);

  t.ok(fs.readdirSync(path.join(dir, 'cache')).some((n) => fs.existsSync(path.join(dir, 'cache', n, 'meta.json'))), 'dataset cached');
});

t.test('layer sharing: every setup, table, JSON, SVG', async (t) => {
  const dir = await tempDir(t, 'bench-sharing');
  makeUntarSource(dir);
  const r = await bench(dir, ['--sharing', '--containers=2']);
  t.equal(r.code, 0, `exit 0; stderr tail: ${r.stderr.slice(-2000)}`);
  t.match(r.stdout, /2 containers over the same lowers, each reading the same 2 MiB file/);
  const json = JSON.parse(fs.readFileSync(path.join(dir, 'out', 'sharing.json'), 'utf8'));
  const ran = json.runs.map((x: { name: string }) => x.name);
  for (const name of ['kernel', 'fuse-overlayfs', 'stratafs', 'full-copy']) t.ok(ran.includes(name), `${name} measured`);
  for (const name of ['stratafs-daemon', 'reflink-copy']) {
    t.ok(ran.includes(name) || json.skipped[name]?.length > 0, `${name} measured or skipped with a reason`);
  }
  for (const x of json.runs) {
    t.equal(x.error, undefined, `${x.name}: no error`);
    t.equal(x.mountSeconds.length, 2, `${x.name}: two containers made`);
    t.equal(x.readSeconds.length, 2, `${x.name}: the file read in each`);
    t.type(x.pageCacheGrowth, 'number', `${x.name}: page-cache growth measured`);
  }
  const byName = (n: string) => json.runs.find((x: { name: string }) => x.name === n);
  t.equal(byName('kernel').daemons, 0, 'kernel overlayfs has no daemon');
  t.equal(byName('fuse-overlayfs').daemons, 2, 'one fuse-overlayfs daemon per mount');
  t.ok(byName('stratafs').memory.rss > 0, 'stratafs daemons found and measured');
  t.ok(byName('full-copy').diskBytes >= 2 * json.bigBytes, 'each full copy holds the big file');
  t.ok(byName('stratafs').diskBytes < json.bigBytes, 'stratafs uppers hold no copy of it');
  const svg = fs.readFileSync(path.join(dir, 'out', 'sharing.svg'), 'utf8');
  t.same(tagErrors(svg), [], 'SVG well-formed');
  const md = fs.readFileSync(path.join(dir, 'out', 'sharing.md'), 'utf8');
  t.equal(md.split('\n').filter((l) => l.startsWith('| `')).length, json.runs.length, 'markdown row per setup');
  await noMountsUnder(t, dir);
});
