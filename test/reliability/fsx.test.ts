/**
 * The fsx-style exerciser (fsx.py) on a file that starts in a lower layer, through a
 * stratafs mount, in one long-lived python3 child: read, write, append, truncate,
 * fallocate, punch hole, zero range, mmap write, every op checked against a model.
 *
 * Twice: with the daemon serving the data (passthrough=off: READ and WRITE requests) and
 * with FUSE passthrough (the default as root). STRATAFS_FSX_OPS sets the number of ops
 * per run (default 50000, so 100k in all), STRATAFS_SEED replays a run (each run prints
 * its seed). After unmounting, the upper copy must equal what the exerciser saw.
 *
 * Then with O_DIRECT (like fsx -Z: every open O_DIRECT, 4 KiB aligned offsets, lengths
 * and sizes, aligned buffers, no mmap), STRATAFS_FSX_DIRECT_OPS ops (default 5000) with
 * one seed on the daemon data path, with passthrough and on kernel overlayfs: each agrees
 * with its model, and the three upper files are the same.
 */
import t from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { C } from '../../src/native';
import { mountKernelOverlay } from '../lib/mounts';
import { forceUnmount, makeLayers, mountWith, py } from './lib';

const OPS = Number(process.env.STRATAFS_FSX_OPS ?? 50000);
const DIRECT_OPS = Number(process.env.STRATAFS_FSX_DIRECT_OPS ?? 5000);
const SEED = Number(process.env.STRATAFS_SEED ?? Date.now() % 1_000_000);
const FSX = fs.readFileSync(path.join(__dirname, 'fsx.py'), 'utf8');
const MAXLEN = 256 << 10;
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

interface Run {
  /** sha256 of the upper file after unmounting, or null when the run failed */
  upper: string | null;
}

/**
 * One exerciser run on a fresh lower holding `initial`, on stratafs with `extra` options
 * or on kernel overlayfs; checks the run and the upper copy.
 */
async function fsxRun(
  t: tap.Test, target: 'stratafs' | 'kernel', extra: string, seed: number, ops: number, direct: boolean, initial: Buffer,
): Promise<Run> {
  const l = makeLayers(t, 'fsx');
  fs.writeFileSync(`${l.lower}/file`, initial);
  if (target === 'kernel') {
    const k = await mountKernelOverlay({ lowers: [l.lower], upper: l.upper, work: l.work, mnt: l.mnt });
    t.teardown(() => k.unmount());
  } else {
    const m = await mountWith(l, {}, extra);
    t.equal(m.code, 0, m.stderr);
    if (m.code !== 0) return { upper: null };
  }
  t.comment(`seed ${seed} (replay: STRATAFS_SEED=${SEED})`);
  const cfg = {
    path: `${l.mnt}/file`, seed, ops, maxlen: MAXLEN, direct,
    falloc: { KEEP_SIZE: C.FALLOC_FL_KEEP_SIZE, PUNCH_HOLE: C.FALLOC_FL_PUNCH_HOLE, ZERO_RANGE: C.FALLOC_FL_ZERO_RANGE },
  };
  const r = await py(FSX, [JSON.stringify(cfg)], 400_000);
  t.equal(r.status, 0, `exerciser agrees with the model after every op ${r.stderr}`);
  if (r.status !== 0) return { upper: null };
  const report = JSON.parse(r.stdout) as { size: number; counts: Record<string, number> };
  t.comment(`op counts: ${JSON.stringify(report.counts)}`);
  for (const op of ['read', 'write', 'append', 'truncate', 'fallocate', 'punch', ...(direct ? [] : ['mmap'])]) {
    t.ok((report.counts[op] ?? 0) > 0, `${op} ran`);
  }
  const inMount = (await py('import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],"rb").read()).hexdigest())', [cfg.path])).stdout.trim();
  forceUnmount(l.mnt);
  const upper = fs.readFileSync(`${l.upper}/file`);
  t.equal(upper.length, report.size, 'the upper copy has the final size');
  t.equal(sha(upper), inMount, 'and the content seen through the mount');
  t.same(fs.readFileSync(`${l.lower}/file`), initial, 'the lower file is untouched');
  return { upper: sha(upper) };
}

for (const [label, extra] of [['daemon data path (passthrough=off)', ',passthrough=off'], ['passthrough', '']] as const) {
  t.test(`fsx: ${OPS} ops, ${label}`, async (t) => {
    await fsxRun(t, 'stratafs', extra, SEED + (extra ? 0 : 1), OPS, false, randomBytes(100_000));
  });
}

t.test(`fsx with O_DIRECT: ${DIRECT_OPS} ops, daemon data path, passthrough and kernel overlayfs`, async (t) => {
  const initial = randomBytes(100 * 4096);
  const seed = SEED + 2;
  const runs: Record<string, Run> = {};
  for (const [label, target, extra] of [
    ['daemon data path (passthrough=off)', 'stratafs', ',passthrough=off'],
    ['passthrough', 'stratafs', ''],
    ['kernel overlayfs', 'kernel', ''],
  ] as const) {
    await t.test(label, async (t) => {
      runs[label] = await fsxRun(t, target, extra, seed, DIRECT_OPS, true, initial);
    });
  }
  const kernel = runs['kernel overlayfs'].upper;
  t.ok(kernel !== null, 'kernel overlayfs ran');
  t.equal(runs['daemon data path (passthrough=off)'].upper, kernel, 'daemon data path: same upper file as kernel overlayfs');
  t.equal(runs.passthrough.upper, kernel, 'passthrough: same upper file as kernel overlayfs');
});
