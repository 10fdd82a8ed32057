/**
 * The fsx-style exerciser (fsx.py) on a file that starts in a lower layer, through a
 * stratafs mount, in one long-lived python3 child: read, write, append, truncate,
 * fallocate, punch hole, zero range, mmap write, every op checked against a model.
 *
 * Twice: with the daemon serving the data (passthrough=off: writeback cache, READ and
 * WRITE requests) and with FUSE passthrough (the default as root). STRATAFS_FSX_OPS
 * sets the number of ops per run (default 50000, so 100k in all), STRATAFS_SEED replays
 * a run (each run prints its seed). After unmounting, the upper copy must equal what the
 * exerciser saw.
 */
import t from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { C } from '../../src/native';
import { forceUnmount, makeLayers, mountWith, py } from './lib';

const OPS = Number(process.env.STRATAFS_FSX_OPS ?? 50000);
const SEED = Number(process.env.STRATAFS_SEED ?? Date.now() % 1_000_000);
const FSX = fs.readFileSync(path.join(__dirname, 'fsx.py'), 'utf8');
const MAXLEN = 256 << 10;

for (const [label, extra] of [['daemon data path (passthrough=off)', ',passthrough=off'], ['passthrough', '']] as const) {
  t.test(`fsx: ${OPS} ops, ${label}`, async (t) => {
    const l = makeLayers(t, 'fsx');
    const initial = randomBytes(100_000);
    fs.writeFileSync(`${l.lower}/file`, initial);
    const m = await mountWith(l, {}, extra);
    t.equal(m.code, 0, m.stderr);
    const seed = SEED + (extra ? 0 : 1);
    t.comment(`seed ${seed} (replay: STRATAFS_SEED=${SEED})`);
    const cfg = {
      path: `${l.mnt}/file`, seed, ops: OPS, maxlen: MAXLEN,
      falloc: { KEEP_SIZE: C.FALLOC_FL_KEEP_SIZE, PUNCH_HOLE: C.FALLOC_FL_PUNCH_HOLE, ZERO_RANGE: C.FALLOC_FL_ZERO_RANGE },
    };
    const r = await py(FSX, [JSON.stringify(cfg)], 400_000);
    t.equal(r.status, 0, `exerciser agrees with the model after every op ${r.stderr}`);
    if (r.status !== 0) return;
    const report = JSON.parse(r.stdout) as { size: number; counts: Record<string, number> };
    t.comment(`op counts: ${JSON.stringify(report.counts)}`);
    for (const op of ['read', 'write', 'append', 'truncate', 'fallocate', 'punch', 'mmap']) {
      t.ok((report.counts[op] ?? 0) > 0, `${op} ran`);
    }
    const inMount = (await py('import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],"rb").read()).hexdigest())', [cfg.path])).stdout.trim();
    forceUnmount(l.mnt);
    const upper = fs.readFileSync(`${l.upper}/file`);
    t.equal(upper.length, report.size, 'the upper copy has the final size');
    t.equal(createHash('sha256').update(upper).digest('hex'), inMount, 'and the content seen through the mount');
    t.same(fs.readFileSync(`${l.lower}/file`), initial, 'the lower file is untouched');
  });
}
