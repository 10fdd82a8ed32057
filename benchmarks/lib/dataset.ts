/**
 * The layer stack every target works on, built once per run in the scratch directory.
 *
 *   layers/l1 (top)     tree/   a smaller tree reusing some dir names of the main tree
 *                       list/   the dir listed with `ls -l` (1k entries)
 *   layers/l2 (middle)  small/  the small files appended to (copy-up)
 *                       big.bin the big file (read, and copied up by a 1-byte append)
 *   layers/l3 (bottom)  tree/   the main tree of N files in nested dirs
 *   native/             the merged view as one plain directory (the baseline)
 *   src.tar             the archive extracted by the untar workload
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { BenchOptions } from './options';
import { describeFailure, ok, q, sh } from './proc';

export interface Dataset {
  root: string;
  /** top first, as in lowerdir= */
  lowers: string[];
  native: string;
  srcTar: string;
  /** merged-relative dirs removed by the rm workload */
  rmDirs: string[];
  bigSize: number;
  files: number;
}

const FILES_PER_DIR = 50;

function content(i: number): string {
  const line = `line ${i} of a small benchmark file\n`;
  return line.repeat(1 + (i % 40));
}

/** Writes COUNT files as TOP/SUB/FILE with about FILES_PER_DIR files per leaf dir. */
function writeTree(root: string, count: number, subPrefix: string, filePrefix: string): number {
  const leaves = Math.max(1, Math.ceil(count / FILES_PER_DIR));
  const tops = Math.max(1, Math.ceil(Math.sqrt(leaves)));
  const subsPerTop = Math.ceil(leaves / tops);
  let n = 0;
  for (let leaf = 0; leaf < leaves && n < count; leaf++) {
    const top = `d${String(Math.floor(leaf / subsPerTop)).padStart(3, '0')}`;
    const dir = path.join(root, top, `${subPrefix}${String(leaf % subsPerTop).padStart(3, '0')}`);
    fs.mkdirSync(dir, { recursive: true });
    for (let f = 0; f < FILES_PER_DIR && n < count; f++, n++) {
      fs.writeFileSync(path.join(dir, `${filePrefix}${String(f).padStart(3, '0')}.txt`), content(n));
    }
  }
  return tops;
}

function writeFlat(dir: string, count: number, prefix: string): void {
  fs.mkdirSync(dir, { recursive: true });
  const width = String(count).length;
  for (let i = 0; i < count; i++) fs.writeFileSync(path.join(dir, `${prefix}${String(i).padStart(width, '0')}`), content(i));
}

function writeBig(file: string, mib: number): void {
  const chunk = randomBytes(1 << 20);
  const fd = fs.openSync(file, 'w');
  try {
    for (let i = 0; i < mib; i++) fs.writeSync(fd, chunk);
  } finally {
    fs.closeSync(fd);
  }
}

async function must(what: string, script: string): Promise<void> {
  const r = await sh(script);
  if (!ok(r)) throw new Error(describeFailure(what, r));
}

export async function buildDataset(root: string, o: BenchOptions, log: (s: string) => void): Promise<Dataset> {
  const t0 = Date.now();
  const [l1, l2, l3] = ['l1', 'l2', 'l3'].map((n) => path.join(root, 'layers', n));
  // main tree at the bottom; a quarter-size tree on top reuses its top dir names and
  // half of its second-level names ("e" = same names as below, "x" = new ones)
  const tops = writeTree(path.join(l3, 'tree'), o.files, 'e', 'f');
  const extra = Math.max(1, Math.floor(o.files / 4));
  writeTree(path.join(l1, 'tree'), Math.ceil(extra / 2), 'e', 'g');
  writeTree(path.join(l1, 'tree'), Math.floor(extra / 2), 'x', 'g');
  writeFlat(path.join(l1, 'list'), o.listEntries, 'entry-');
  writeFlat(path.join(l2, 'small'), o.smallFiles, 's');
  writeBig(path.join(l2, 'big.bin'), o.bigMib);
  const native = path.join(root, 'native');
  fs.mkdirSync(native);
  await must('copy the layers into the native baseline', `for l in ${q(l3)} ${q(l2)} ${q(l1)}; do cp -a "$l/." ${q(native)}/; done`);
  const srcTar = path.join(root, 'src.tar');
  await must(
    `archive ${o.untarSource}`,
    `tar cf ${q(srcTar)} -C ${q(path.dirname(o.untarSource))} ${q(path.basename(o.untarSource))}`,
  );
  // the rm workload removes about a quarter of the tree's top dirs, which are merged dirs
  const rmDirs: string[] = [];
  for (let i = 0; i < Math.max(1, Math.ceil(tops / 4)); i++) rmDirs.push(`tree/d${String(i).padStart(3, '0')}`);
  const merged = o.files + extra + o.listEntries + o.smallFiles + 1;
  log(`dataset: ${merged} files in 3 lowers, big file ${o.bigMib} MiB, built in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  return { root, lowers: [l1, l2, l3], native, srcTar, rmDirs, bigSize: o.bigMib << 20, files: merged };
}
