/**
 * Layer tars in and out of the overlay format: whiteouts both ways, hard links, devices,
 * xattrs, ownership, modes and times; and hostile tars that try to leave the layer.
 */
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { importTar } from '../../../src/graphdriver/tar-import';
import { exportTar as exportStack } from '../../../src/graphdriver/tar-export';
import { LayerStack } from '../../../src/layers';
import { changes } from '../../../src/graphdriver/changes';
import { native } from '../../../src/native';
import { tempDir } from '../../lib/tmp';
import { makeTar, readTar, streamOf, type Member } from './tarlib';

const PREFIX = 'trusted.overlay.';
const opts = { xattrPrefix: PREFIX };
/** Diff of the layer `upper` over `lowers` (top first) */
const exportTar = (upper: string, prefix: string, lowers: string[] = []): ReturnType<typeof exportStack> =>
  exportStack(LayerStack.open(upper, lowers, prefix));

function xattr(file: string, name: string): string | undefined {
  try {
    return native.getxattr(file, name, false).toString();
  } catch {
    return undefined;
  }
}

const RICH: Member[] = [
  { name: 'etc/', type: 'directory', mode: 0o755, mtime: new Date(1_500_000_000_000) },
  { name: 'etc/passwd', data: 'root:x:0:0\n', mode: 0o644, uid: 0, gid: 0 },
  { name: 'etc/.wh.motd', data: '' },
  { name: 'var/', type: 'directory', mode: 0o750, uid: 12, gid: 34 },
  { name: 'var/.wh..wh..opq', data: '' },
  { name: 'var/new', data: 'new\n', uid: 1000, gid: 1000, mode: 0o600 },
  { name: 'bin/su', data: 'ELF', mode: 0o4755 },
  { name: 'bin/link-to-su', type: 'link', linkname: 'bin/su' },
  { name: 'bin/sh', type: 'symlink', linkname: 'busybox' },
  { name: 'dev/null', type: 'character-device', devmajor: 1, devminor: 3, mode: 0o666 },
  { name: 'dev/loop0', type: 'block-device', devmajor: 7, devminor: 0, mode: 0o660 },
  { name: 'run/fifo', type: 'fifo', mode: 0o600 },
  { name: 'opt/cap', data: 'x', pax: { 'SCHILY.xattr.user.note': 'hello', 'SCHILY.xattr.trusted.overlay.redirect': '/evil' } },
  { name: 'naïve-ünïcode', data: 'u' },
];

t.test('import: overlay format, ownership, modes, times, links, devices, xattrs', async (t) => {
  const dir = await tempDir(t, 'gdtar');
  const r = await importTar(streamOf(await makeTar(RICH)), dir, opts);
  t.equal(r.size, 'root:x:0:0\n'.length + 'new\n'.length + 3 + 1 + 1, 'size is the file data written');
  const wh = fs.lstatSync(path.join(dir, 'etc/motd'));
  t.ok(wh.isCharacterDevice() && wh.rdev === 0, '.wh.motd became a 0/0 char device');
  t.notOk(fs.existsSync(path.join(dir, 'etc/.wh.motd')), 'no .wh. file left');
  t.equal(xattr(path.join(dir, 'var'), `${PREFIX}opaque`), 'y', '.wh..wh..opq made var opaque');
  t.notOk(fs.existsSync(path.join(dir, 'var/.wh..wh..opq')));
  const v = fs.statSync(path.join(dir, 'var'));
  t.same([v.mode & 0o7777, v.uid, v.gid], [0o750, 12, 34], 'dir owner and mode');
  const n = fs.statSync(path.join(dir, 'var/new'));
  t.same([n.mode & 0o7777, n.uid, n.gid], [0o600, 1000, 1000], 'file owner and mode');
  t.equal(fs.statSync(path.join(dir, 'bin/su')).mode & 0o7777, 0o4755, 'setuid kept');
  t.equal(fs.statSync(path.join(dir, 'bin/su')).ino, fs.statSync(path.join(dir, 'bin/link-to-su')).ino, 'hard link shares the inode');
  t.equal(fs.readlinkSync(path.join(dir, 'bin/sh')), 'busybox', 'symlink');
  const dn = fs.lstatSync(path.join(dir, 'dev/null'));
  t.ok(dn.isCharacterDevice() && dn.rdev === ((1 << 8) | 3), 'char device 1:3');
  t.ok(fs.lstatSync(path.join(dir, 'dev/loop0')).isBlockDevice(), 'block device');
  t.ok(fs.lstatSync(path.join(dir, 'run/fifo')).isFIFO(), 'fifo');
  t.equal(xattr(path.join(dir, 'opt/cap'), 'user.note'), 'hello', 'PAX xattr set');
  t.equal(xattr(path.join(dir, 'opt/cap'), `${PREFIX}redirect`), undefined, 'private overlay xattr from the tar dropped');
  t.equal(fs.statSync(path.join(dir, 'etc')).mtimeMs, 1_500_000_000_000, 'dir mtime set after its contents');
  t.equal(fs.statSync(path.join(dir, 'etc/passwd')).mtimeMs, 1_600_000_000_000, 'file mtime');
  t.equal(fs.readFileSync(path.join(dir, 'naïve-ünïcode'), 'utf8'), 'u', 'non-ASCII name');
});

t.test('import over existing content: replace, whiteout over a dir, dir kept', async (t) => {
  const dir = await tempDir(t, 'gdtar');
  fs.mkdirSync(path.join(dir, 'a/b'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'a/b/f'), 'old');
  fs.writeFileSync(path.join(dir, 'a/keep'), 'keep');
  fs.writeFileSync(path.join(dir, 'file'), 'old');
  await importTar(streamOf(await makeTar([
    { name: 'a/', type: 'directory', mode: 0o711 },
    { name: 'a/.wh.b', data: '' },
    { name: 'file', data: 'new' },
  ])), dir, opts);
  t.ok(fs.lstatSync(path.join(dir, 'a/b')).isCharacterDevice(), 'the directory became a whiteout');
  t.equal(fs.readFileSync(path.join(dir, 'a/keep'), 'utf8'), 'keep', 'an existing dir is merged into');
  t.equal(fs.statSync(path.join(dir, 'a')).mode & 0o7777, 0o711);
  t.equal(fs.readFileSync(path.join(dir, 'file'), 'utf8'), 'new', 'a file is replaced');
});

t.test('export: whiteouts and opaque dirs back to .wh. form, byte-exact contents', async (t) => {
  const dir = await tempDir(t, 'gdtar');
  await importTar(streamOf(await makeTar(RICH)), dir, opts);
  const big = Buffer.alloc(300_000);
  for (let i = 0; i < big.length; i++) big[i] = (i * 7919) & 0xff;
  fs.writeFileSync(path.join(dir, 'big'), big);
  const members = await readTar(exportTar(dir, PREFIX) as unknown as Readable);
  const byName = new Map(members.map((m) => [m.header.name.replace(/\/$/, ''), m]));
  t.equal(byName.get('etc/.wh.motd')?.header.type, 'file', 'whiteout exported as .wh.motd');
  t.equal(byName.get('etc/.wh.motd')?.header.size, 0);
  t.notOk(byName.has('etc/motd'), 'no device for the whiteout');
  t.ok(byName.has('var/.wh..wh..opq'), 'opaque marker exported');
  const names = members.map((m) => m.header.name.replace(/\/$/, ''));
  t.ok(names.indexOf('var') < names.indexOf('var/.wh..wh..opq') && names.indexOf('var/.wh..wh..opq') < names.indexOf('var/new'),
    'marker right after its dir, before the dir contents');
  t.ok(Buffer.compare(byName.get('big')!.data, big) === 0, 'contents byte-exact');
  // names in byte order: link-to-su comes first and carries the data
  const first = byName.get('bin/link-to-su')!;
  const second = byName.get('bin/su')!;
  t.equal(first.header.type, 'file');
  t.equal(first.header.mode, 0o4755);
  t.equal(second.header.type, 'link', 'second name of a hard link is a link entry');
  t.equal(second.header.linkname, 'bin/link-to-su');
  t.equal(byName.get('dev/null')?.header.type, 'character-device');
  t.same([byName.get('dev/null')?.header.devmajor, byName.get('dev/null')?.header.devminor], [1, 3]);
  t.equal(byName.get('bin/sh')?.header.linkname, 'busybox');
  t.equal(byName.get('opt/cap')?.header.pax?.['SCHILY.xattr.user.note'], 'hello', 'xattr exported');
  t.notOk(Object.keys(byName.get('var')?.header.pax ?? {}).some((k) => k.includes('overlay')), 'private xattrs not exported');
  t.same([byName.get('var/new')?.header.uid, byName.get('var/new')?.header.gid], [1000, 1000]);

  // and back in: the same layer again
  const again = await tempDir(t, 'gdtar');
  const chunks: Buffer[] = [];
  for await (const c of exportTar(dir, PREFIX) as unknown as AsyncIterable<Buffer>) chunks.push(c);
  await importTar(streamOf(Buffer.concat(chunks)), again, opts);
  t.ok(fs.lstatSync(path.join(again, 'etc/motd')).isCharacterDevice(), 'round trip keeps the whiteout');
  t.equal(xattr(path.join(again, 'var'), `${PREFIX}opaque`), 'y', 'round trip keeps opaque');
  t.ok(Buffer.compare(fs.readFileSync(path.join(again, 'big')), big) === 0, 'round trip keeps contents');
});

t.test('hostile tars are refused and write nothing outside the layer', async (t) => {
  const base = await tempDir(t, 'gdtar');
  const outside = path.join(base, 'outside');
  fs.mkdirSync(outside);
  const cases: [string, Member[]][] = [
    ['../ in a name', [{ name: '../outside/escaped', data: 'x' }]],
    ['../ in the middle', [{ name: 'a/../../outside/escaped', data: 'x' }]],
    ['absolute symlink then a file through it', [
      { name: 'evil', type: 'symlink', linkname: outside },
      { name: 'evil/escaped', data: 'x' },
    ]],
    ['relative symlink climbing out then a file through it', [
      { name: 'up', type: 'symlink', linkname: '../outside' },
      { name: 'up/escaped', data: 'x' },
    ]],
    ['hard link to a file outside', [{ name: 'hl', type: 'link', linkname: '../outside/target' }]],
    ['whiteout through a symlink', [
      { name: 'evil', type: 'symlink', linkname: outside },
      { name: 'evil/.wh.target', data: '' },
    ]],
  ];
  fs.writeFileSync(path.join(outside, 'target'), 'keep');
  for (const [what, members] of cases) {
    const layer = path.join(base, `layer-${cases.findIndex((c) => c[0] === what)}`);
    fs.mkdirSync(layer);
    await t.rejects(importTar(streamOf(await makeTar(members)), layer, opts), /leaves the layer/, what);
    t.same(fs.readdirSync(outside), ['target'], `${what}: nothing written outside`);
    t.equal(fs.readFileSync(path.join(outside, 'target'), 'utf8'), 'keep', `${what}: nothing changed outside`);
  }
});

t.test('a truncated tar is an error', async (t) => {
  const dir = await tempDir(t, 'gdtar');
  const tarball = await makeTar([{ name: 'f', data: Buffer.alloc(5000, 1) }]);
  await t.rejects(importTar(streamOf(tarball.subarray(0, 1024)), dir, opts), 'truncated input rejected');
});

t.test('export: a directory renamed from a lower goes out opaque with its whole contents', async (t) => {
  const base = await tempDir(t, 'gdtar');
  const [lower2, lower1, upper] = ['lower2', 'lower1', 'upper'].map((n) => path.join(base, n));
  fs.mkdirSync(path.join(lower2, 'a', 'sub'), { recursive: true });
  fs.writeFileSync(path.join(lower2, 'a', 'x'), 'x2');
  fs.writeFileSync(path.join(lower2, 'a', 'gone'), 'g');
  fs.writeFileSync(path.join(lower2, 'a', 'sub', 'z'), 'z');
  fs.mkdirSync(path.join(lower1, 'a'), { recursive: true });
  fs.writeFileSync(path.join(lower1, 'a', 'x'), 'x1');
  fs.mkdirSync(path.join(upper, 'b', 'sub'), { recursive: true });
  // rename a -> b: whiteout at a, b redirected to /a; then b/y deleted, b/n and b/sub/w added
  native.mknodat(native.constants.AT_FDCWD, path.join(upper, 'a'), fs.constants.S_IFCHR, 0, 0);
  native.setxattr(path.join(upper, 'b'), `${PREFIX}redirect`, Buffer.from('/a'), 0, false);
  native.mknodat(native.constants.AT_FDCWD, path.join(upper, 'b', 'gone'), fs.constants.S_IFCHR, 0, 0);
  fs.writeFileSync(path.join(upper, 'b', 'n'), 'n');
  fs.writeFileSync(path.join(upper, 'b', 'sub', 'w'), 'w');
  const members = await readTar(exportTar(upper, PREFIX, [lower1, lower2]) as unknown as Readable);
  const got = members.map((m) => `${m.header.name}${m.data.length ? `=${m.data}` : ''}`);
  t.same(got.map((n) => n.replace(/\/$/, '')), ['.wh.a', 'b', 'b/.wh..wh..opq', 'b/n=n', 'b/sub', 'b/sub/w=w', 'b/sub/z=z', 'b/x=x1'],
    'the renamed dir, opaque, with upper over lowers (top lower wins, whiteouts applied)');
  const stack = LayerStack.open(upper, [lower1, lower2], PREFIX);
  const kinds = (await changes(stack)).changes.map((c) => `${c.Kind} ${c.Path}`).sort();
  stack.close();
  t.same(kinds, ['1 /b', '1 /b/n', '1 /b/sub', '1 /b/sub/w', '1 /b/sub/z', '1 /b/x', '2 /a'], 'Changes: the renamed dir and all it holds are added, the old name deleted');
});
