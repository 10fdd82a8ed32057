/**
 * The layer stack every target works on. The layers are built once per size and kept in
 * the cache directory (they are only ever read); the native baseline, which workloads
 * change, is copied from them into each run's scratch directory.
 *
 *   l1 (top)     tree/    a quarter-size tree reusing some dir names of the main tree
 *                list/    the dir listed with `ls -l` (1k entries)
 *   l2 (middle)  small/   the small files appended to (copy-up)
 *                big.bin  the big file (read, and copied up by a 1-byte append)
 *                fio.bin  the file copied up and then read and written at random
 *   l3 (bottom)  tree/    the main tree of N files in nested dirs
 *                inc/     the untar source, extracted (untar over a lower dir)
 *   src.tar      the archive extracted by the untar workloads
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { BenchOptions } from './options';
import { describeFailure, ok, q, sh } from './proc';
import { cachedBuild } from './cache';
import { writeBig, writeFlat, writeTree } from './tree';

export interface Dataset {
  /** this run's scratch directory */
  root: string;
  /** top first, as in lowerdir= */
  lowers: string[];
  native: string;
  srcTar: string;
  /** merged-relative dirs removed by the rm workload */
  rmDirs: string[];
  bigSize: number;
  fioSize: number;
  files: number;
}

/** What the cache keeps beside the layers. */
interface Meta {
  tops: number;
  files: number;
}

/** The random-I/O file: an eighth of the big file, at least 4 MiB. */
export function fioMib(o: BenchOptions): number {
  return Math.max(4, Math.floor(o.bigMib / 8));
}

async function must(what: string, script: string): Promise<void> {
  const r = await sh(script);
  if (!ok(r)) throw new Error(describeFailure(what, r));
}

/** Writes the layers and the archive into DIR (a fresh directory). */
async function buildLayers(dir: string, o: BenchOptions): Promise<Meta> {
  const [l1, l2, l3] = ['l1', 'l2', 'l3'].map((n) => path.join(dir, 'layers', n));
  // main tree at the bottom; a quarter-size tree on top reuses its top dir names and
  // half of its second-level names ("e" = same names as below, "x" = new ones)
  const tops = writeTree(path.join(l3, 'tree'), o.files, 'e', 'f');
  const extra = Math.max(1, Math.floor(o.files / 4));
  writeTree(path.join(l1, 'tree'), Math.ceil(extra / 2), 'e', 'g');
  writeTree(path.join(l1, 'tree'), Math.floor(extra / 2), 'x', 'g');
  writeFlat(path.join(l1, 'list'), o.listEntries, 'entry-');
  writeFlat(path.join(l2, 'small'), o.smallFiles, 's');
  writeBig(path.join(l2, 'big.bin'), o.bigMib);
  writeBig(path.join(l2, 'fio.bin'), fioMib(o));
  const srcTar = path.join(dir, 'src.tar');
  await must(
    `archive ${o.untarSource}`,
    `tar cf ${q(srcTar)} -C ${q(path.dirname(o.untarSource))} ${q(path.basename(o.untarSource))}`,
  );
  fs.mkdirSync(path.join(l3, 'inc'));
  await must('extract the archive into the bottom layer', `tar xf ${q(srcTar)} -C ${q(path.join(l3, 'inc'))}`);
  const { stdout } = await sh(`find ${q(path.join(dir, 'layers'))} -mindepth 2 -not -type d | wc -l`);
  return { tops, files: Number(stdout.trim()) };
}

/** The cache key: everything the layers depend on. */
function key(o: BenchOptions): string {
  const src = o.untarSource.replace(/[^A-Za-z0-9]+/g, '_');
  return `v2-f${o.files}-b${o.bigMib}-s${o.smallFiles}-l${o.listEntries}-${src}`;
}

/** The cached layers, and (with NATIVE) a fresh native baseline in ROOT. */
export async function buildDataset(root: string, o: BenchOptions, log: (s: string) => void, withNative = true): Promise<Dataset> {
  const t0 = Date.now();
  const { dir, meta, built } = await cachedBuild<Meta>(o.cache, key(o), (d) => buildLayers(d, o), log);
  const lowers = ['l1', 'l2', 'l3'].map((n) => path.join(dir, 'layers', n));
  const native = path.join(root, 'native');
  if (withNative) {
    fs.mkdirSync(native);
    await must('copy the layers into the native baseline', `for l in ${[...lowers].reverse().map(q).join(' ')}; do cp -a "$l/." ${q(native)}/; done`);
  }
  // the rm workload removes about a quarter of the tree's top dirs, which are merged dirs
  const rmDirs: string[] = [];
  for (let i = 0; i < Math.max(1, Math.ceil(meta.tops / 4)); i++) rmDirs.push(`tree/d${String(i).padStart(3, '0')}`);
  log(
    `dataset: ${meta.files} files in 3 lowers, big file ${o.bigMib} MiB (${built ? 'built' : 'cached'} in ${dir}); ` +
      `ready in ${((Date.now() - t0) / 1000).toFixed(1)} s`,
  );
  return {
    root,
    lowers,
    native,
    srcTar: path.join(dir, 'src.tar'),
    rmDirs,
    bigSize: o.bigMib * 2 ** 20,
    fioSize: fioMib(o) * 2 ** 20,
    files: meta.files,
  };
}
