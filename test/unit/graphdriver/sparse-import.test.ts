/**
 * GNU sparse tar entries through ApplyDiff's importer, made by GNU tar itself in every
 * spelling dockerd (Go's archive/tar) reads: old GNU ('S' headers, with extension blocks
 * when the map is long) and PAX 0.0, 0.1 and 1.0. The imported file must equal the
 * original (cmp), keep its holes (few blocks allocated) and carry its real name; a map
 * that does not add up, or a sparse version nobody defined, is refused.
 */
import t from 'tap';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { importTar } from '../../../src/graphdriver/tar-import';
import { tempDir } from '../../lib/tmp';
import { run, runOk } from '../../lib/proc';
import { makeTar, streamOf } from './tarlib';

const opts = { xattrPrefix: 'trusted.overlay.' };
const MiB = 1024 * 1024;

/** A file of `size` bytes with random data at `regions` ([offset, length]) and holes elsewhere. */
function holey(file: string, size: number, regions: [number, number][]): void {
  const fd = fs.openSync(file, 'w', 0o640);
  try {
    fs.ftruncateSync(fd, size);
    for (const [off, len] of regions) fs.writeSync(fd, randomBytes(len), 0, len, off);
  } finally {
    fs.closeSync(fd);
  }
}

const FORMATS: [string, string[]][] = [
  ['old GNU', ['--format=gnu']],
  ['PAX 0.0', ['--format=posix', '--sparse-version=0.0']],
  ['PAX 0.1', ['--format=posix', '--sparse-version=0.1']],
  ['PAX 1.0', ['--format=posix', '--sparse-version=1.0']],
];

const GiB = 1024 * MiB;

/** [name, real size, data regions, whole-file cmp (else the regions and the holes are compared)] */
const LAYOUTS: [string, number, [number, number][], boolean][] = [
  ['4 regions', 256 * MiB, [[0, 3000], [10 * MiB + 100, 5000], [100 * MiB + 7, MiB], [256 * MiB - 5000, 5000]], true],
  // as in the report: 20 GiB, data past 4 GiB and at the very end
  ['20 GiB, data past 4 GiB', 20 * GiB, [[4096, 4096], [4 * GiB + 3, 70_000], [20 * GiB - 1000, 1000]], false],
  // 30 regions: an old GNU header holds 4, the rest go in extension blocks
  ['30 regions', 64 * MiB, Array.from({ length: 30 }, (_, i): [number, number] => [i * 2 * MiB + 512, 4096 + i]), true],
];

/** Compares `a` and `b` at `regions` and checks that `b` has no data outside them (SEEK_DATA via python). */
async function sameRegions(a: string, b: string, regions: [number, number][]): Promise<string> {
  const fa = fs.openSync(a, 'r');
  const fb = fs.openSync(b, 'r');
  try {
    for (const [off, len] of regions) {
      const x = Buffer.alloc(len);
      const y = Buffer.alloc(len);
      fs.readSync(fa, x, 0, len, off);
      fs.readSync(fb, y, 0, len, off);
      if (!x.equals(y)) return `region at ${off} differs`;
    }
  } finally {
    fs.closeSync(fa);
    fs.closeSync(fb);
  }
  const script = 'import os,sys\nfd=os.open(sys.argv[1],os.O_RDONLY)\nend=os.fstat(fd).st_size\noff=0\nout=[]\n' +
    'while off<end:\n  try: d=os.lseek(fd,off,os.SEEK_DATA)\n  except OSError: break\n  h=os.lseek(fd,d,os.SEEK_HOLE)\n  out.append((d,h))\n  off=h\nprint(out)';
  const extents = JSON.parse((await runOk('python3', ['-c', script, b])).trim().replace(/\(/g, '[').replace(/\)/g, ']')) as [number, number][];
  for (const [d, h] of extents) {
    if (!regions.some(([off, len]) => d < off + len + 4096 && h > off - 4096)) return `data at ${d}..${h} where the original has a hole`;
  }
  return 'same';
}

for (const [layout, size, regions, wholeCmp] of LAYOUTS) {
  for (const [format, flags] of FORMATS) {
    t.test(`${format}, ${layout}: imported equal, holes kept`, async (t) => {
      const base = await tempDir(t, 'gdsparse');
      const src = path.join(base, 'src');
      fs.mkdirSync(path.join(src, 'data'), { recursive: true });
      const orig = path.join(src, 'data', 'disk.img');
      holey(orig, size, regions);
      const tarball = path.join(base, 'layer.tar');
      await runOk('tar', ['--sparse', ...flags, '-C', src, '-cf', tarball, 'data']);
      t.ok(fs.statSync(tarball).size < 16 * MiB, 'the tar itself is sparse');
      const layer = path.join(base, 'layer');
      fs.mkdirSync(layer);
      await importTar(fs.createReadStream(tarball), layer, opts);
      t.same(fs.readdirSync(path.join(layer, 'data')), ['disk.img'], 'its real name, no GNUSparseFile dir');
      const got = path.join(layer, 'data', 'disk.img');
      const st = fs.statSync(got);
      t.equal(st.size, size, 'real size');
      t.equal(st.mode & 0o7777, 0o640, 'mode');
      if (wholeCmp) {
        const cmp = await run('cmp', [orig, got], { timeoutMs: 120_000 });
        t.equal(cmp.code, 0, `same content (cmp) ${cmp.stdout}${cmp.stderr}`);
      } else t.equal(await sameRegions(orig, got, regions), 'same', 'same data regions, holes elsewhere');
      const dataBlocks = regions.reduce((n, [, len]) => n + Math.ceil(len / 512) + 16, 0);
      t.ok(st.blocks <= dataBlocks, `holes kept: ${st.blocks} blocks of 512 allocated for ${size} bytes (data needs about ${dataBlocks})`);
    });
  }
}

t.test('sparse maps that do not add up are refused', async (t) => {
  const sparse01 = (map: string, realSize: number, data: string): Promise<Buffer> => makeTar([{
    name: 'GNUSparseFile.1/f', data,
    pax: { 'GNU.sparse.major': '0', 'GNU.sparse.minor': '1', 'GNU.sparse.name': 'f', 'GNU.sparse.size': String(realSize), 'GNU.sparse.map': map },
  }]);
  const cases: [string, Promise<Buffer>, RegExp][] = [
    ['a region past the real size', sparse01('0,10,95,10', 100, 'x'.repeat(20)), /past the real size/],
    ['less data than the map says', sparse01('0,10,50,20', 100, 'x'.repeat(20)), /map holds 30 bytes of data, the entry 20/],
    ['overlapping regions', sparse01('0,10,5,10', 100, 'x'.repeat(20)), /overlap/],
    ['a version nobody defined', makeTar([{ name: 'f', data: 'x', pax: { 'GNU.sparse.major': '2', 'GNU.sparse.minor': '0', 'GNU.sparse.realsize': '10' } }]), /format 2\.0 is not supported/],
    ['a sparse map on a directory', makeTar([{ name: 'd/', type: 'directory', pax: { 'GNU.sparse.size': '10', 'GNU.sparse.map': '0,0' } }]), /not a file/],
  ];
  for (const [what, tarball, message] of cases) {
    const layer = await tempDir(t, 'gdsparse');
    await t.rejects(importTar(streamOf(await tarball), layer, opts), { code: 'STRATAFS_ERR_TAR', message }, what);
    t.notOk(fs.existsSync(path.join(layer, 'f')), `${what}: no file left`);
  }
});
