/** Generated file trees for the layers: nested dirs of small files, flat dirs, big files. */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

const FILES_PER_DIR = 50;

function content(i: number): string {
  const line = `line ${i} of a small benchmark file\n`;
  return line.repeat(1 + (i % 40));
}

/**
 * Writes COUNT files as ROOT/TOP/SUB/FILE with FILES_PER_DIR files per leaf dir; returns
 * the number of top dirs (d000, d001, ...).
 */
export function writeTree(root: string, count: number, subPrefix: string, filePrefix: string): number {
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

/** COUNT small files directly in DIR. */
export function writeFlat(dir: string, count: number, prefix: string): void {
  fs.mkdirSync(dir, { recursive: true });
  const width = String(count).length;
  for (let i = 0; i < count; i++) fs.writeFileSync(path.join(dir, `${prefix}${String(i).padStart(width, '0')}`), content(i));
}

/** A file of MIB mebibytes of random data (one random MiB, repeated). */
export function writeBig(file: string, mib: number): void {
  const chunk = randomBytes(1 << 20);
  const fd = fs.openSync(file, 'w');
  try {
    for (let i = 0; i < mib; i++) fs.writeSync(fd, chunk);
  } finally {
    fs.closeSync(fd);
  }
}
