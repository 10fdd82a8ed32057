/**
 * PAX records byte exact: binary xattr values (security.capability), values and names
 * that are not UTF-8, through ApplyDiff (importTar) and Diff (exportTar) and back; and
 * malformed PAX records refused before anything is written.
 */
import t, { type Test } from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { importTar } from '../../../src/graphdriver/tar-import';
import { exportTar as exportStack } from '../../../src/graphdriver/tar-export';
import { LayerStack } from '../../../src/layers';
import { native } from '../../../src/native';
import { tempDir } from '../../lib/tmp';
import { paxRecord, paxRecords, rawHeaders, rawTar, readTar, streamOf, type RawHeader } from './tarlib';

const PREFIX = 'trusted.overlay.';
const opts = { xattrPrefix: PREFIX };
/** Diff of the layer `upper` over `lowers` (top first) */
const exportTar = (upper: string, prefix: string, lowers: string[] = []): ReturnType<typeof exportStack> =>
  exportStack(LayerStack.open(upper, lowers, prefix));

/** VFS_CAP_REVISION_2 with the effective bit, cap_setuid and cap_net_raw permitted (`setcap cap_setuid,cap_net_raw+ep`): bytes above 0x7f */
const CAP = Buffer.from('0100000280200000000000000000000000000000', 'hex');
const BIN = Buffer.from([0xff, 0xfe, 0x00, 0x80, 0xc3, 0x28]);
const CAFE = Buffer.from([0x63, 0x61, 0x66, 0xe9]); // "caf\xe9": latin1, not UTF-8
const DIRN = Buffer.from([0x64, 0xff]);
const LONG = `l/${'n'.repeat(120)}`;

/** a byte-string path (what the addon takes) from a dir and raw name parts */
const at = (dir: string, ...parts: (Buffer | string)[]): string =>
  Buffer.concat([Buffer.from(dir), ...parts.map((p) => Buffer.concat([Buffer.from('/'), Buffer.from(p)]))]).toString('latin1');
const xattr = (file: string, name: string): Buffer | undefined => {
  const v = native.getxattrOrErrno(file, name, false);
  return typeof v === 'number' ? undefined : v;
};
const names = (dir: string): Buffer[] => fs.readdirSync(dir, { encoding: 'buffer' });
const has = (list: Buffer[], b: Buffer): boolean => list.some((n) => n.equals(b));

const INPUT = rawTar([
  { type: 'x', name: 'PaxHeader', body: paxRecord('SCHILY.xattr.security.capability', CAP) },
  { type: '0', name: 'ping', body: Buffer.from('ELF'), mode: 0o755 },
  { type: 'x', name: 'PaxHeader', body: Buffer.concat([paxRecord('path', CAFE), paxRecord('SCHILY.xattr.user.bin', BIN)]) },
  { type: '0', name: 'cafe', body: Buffer.from('latin1 name') },
  { type: '5', name: DIRN, mode: 0o755 },
  { type: '0', name: Buffer.concat([DIRN, Buffer.from('/f')]), body: Buffer.from('f') },
  { type: 'x', name: 'PaxHeader', body: paxRecord('linkpath', CAFE) },
  { type: '2', name: 'to-cafe', linkname: 'x' },
  { type: 'x', name: 'PaxHeader', body: paxRecord('linkpath', CAFE) },
  { type: '1', name: 'hl', linkname: 'x' },
  { type: 'x', name: 'PaxHeader', body: Buffer.concat([paxRecord('path', LONG), paxRecord('SCHILY.xattr.user.long', 'yes')]) },
  { type: '0', name: 'stand-in', body: Buffer.from('long') },
]);

function checkLayer(t: Test, dir: string, what: string): void {
  t.same(xattr(at(dir, 'ping'), 'security.capability'), CAP, `${what}: binary security.capability exact`);
  t.ok(has(names(dir), CAFE), `${what}: non-UTF-8 name exact`);
  t.same(xattr(at(dir, CAFE), 'user.bin'), BIN, `${what}: non-UTF-8 xattr value exact (NUL byte included)`);
  t.equal(fs.readFileSync(Buffer.from(at(dir, CAFE), 'latin1'), 'utf8'), 'latin1 name', `${what}: its contents`);
  t.equal(fs.readFileSync(Buffer.from(at(dir, DIRN, 'f'), 'latin1'), 'utf8'), 'f', `${what}: file in a non-UTF-8 dir`);
  t.same(fs.readlinkSync(path.join(dir, 'to-cafe'), { encoding: 'buffer' }), CAFE, `${what}: non-UTF-8 link target from PAX linkpath`);
  t.equal(fs.statSync(path.join(dir, 'hl')).ino, fs.statSync(Buffer.from(at(dir, CAFE), 'latin1')).ino, `${what}: hard link to a non-UTF-8 name`);
  t.equal(fs.readFileSync(path.join(dir, LONG), 'utf8'), 'long', `${what}: long name from PAX path`);
  t.same(xattr(at(dir, LONG), 'user.long'), Buffer.from('yes'), `${what}: xattr with the long name`);
}

async function collect(s: AsyncIterable<Buffer>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of s) chunks.push(c);
  return Buffer.concat(chunks);
}

t.test('ApplyDiff -> Diff -> ApplyDiff keeps binary xattrs and non-UTF-8 names byte exact', async (t) => {
  const a = await tempDir(t, 'gdpax');
  await importTar(streamOf(INPUT), a, opts);
  checkLayer(t, a, 'imported');

  const out = await collect(exportTar(a, PREFIX) as unknown as AsyncIterable<Buffer>);
  const headers = rawHeaders(out);
  // Go's archive/tar keeps only the last of consecutive `x` headers: never two in a row
  t.notOk(headers.some((h, i) => h.type === 'x' && headers[i + 1]?.type === 'x'), 'at most one x header before an entry');
  const entries = new Map<string, { h: RawHeader; pax: Map<string, Buffer> }>();
  headers.forEach((h, i) => {
    if (h.type === 'x') return;
    const pax = headers[i - 1]?.type === 'x' ? paxRecords(headers[i - 1].body) : new Map<string, Buffer>();
    entries.set((pax.get('path') ?? h.name).toString('latin1'), { h, pax });
  });
  t.same(entries.get('ping')?.pax.get('SCHILY.xattr.security.capability'), CAP, 'exported capability bytes');
  t.same(entries.get(CAFE.toString('latin1'))?.pax.get('SCHILY.xattr.user.bin'), BIN, 'exported non-UTF-8 name and value');
  t.ok(entries.has(Buffer.concat([DIRN, Buffer.from('/f')]).toString('latin1')), 'exported name in a non-UTF-8 dir');
  t.same(entries.get('to-cafe')?.pax.get('linkpath'), CAFE, 'exported link target bytes');
  t.same([entries.get('hl')?.h.type, entries.get('hl')?.pax.get('linkpath')], ['1', CAFE], 'exported hard link to the non-UTF-8 name');
  t.equal(entries.get(LONG)?.h.type, '0', 'long name exported through PAX path');
  t.equal(entries.get('ping')?.h.name.toString(), 'ping', 'plain names stay in the ustar header');
  t.equal((await readTar(streamOf(out))).length, entries.size, 'the tar library reads the same entries');

  const b = await tempDir(t, 'gdpax');
  await importTar(streamOf(out), b, opts);
  checkLayer(t, b, 'round trip');
});

t.test('owners above the ustar range go out in PAX records', async (t) => {
  const a = await tempDir(t, 'gdpax');
  fs.writeFileSync(path.join(a, 'f'), 'f');
  fs.chownSync(path.join(a, 'f'), 3_000_000, 0o10000000);
  const headers = rawHeaders(await collect(exportTar(a, PREFIX) as unknown as AsyncIterable<Buffer>));
  t.same(headers.map((h) => h.type), ['x', '0'], 'one x header, then the file');
  const pax = paxRecords(headers[0].body);
  t.same([pax.get('uid')?.toString(), pax.get('gid')?.toString()], ['3000000', String(0o10000000)]);
  const b = await tempDir(t, 'gdpax');
  await importTar(streamOf(await collect(exportTar(a, PREFIX) as unknown as AsyncIterable<Buffer>)), b, opts);
  const st = fs.statSync(path.join(b, 'f'));
  t.same([st.uid, st.gid], [3_000_000, 0o10000000], 'and back in');
});

t.test('global PAX records apply to the entries after them; local ones win', async (t) => {
  const dir = await tempDir(t, 'gdpax');
  await importTar(streamOf(rawTar([
    { type: 'g', name: 'GlobalHead', body: paxRecord('SCHILY.xattr.user.g', 'global') },
    { type: '0', name: 'a', body: Buffer.from('a') },
    { type: 'x', name: 'PaxHeader', body: paxRecord('SCHILY.xattr.user.g', BIN) },
    { type: '0', name: 'b', body: Buffer.from('b') },
  ])), dir, opts);
  t.same(xattr(at(dir, 'a'), 'user.g'), Buffer.from('global'));
  t.same(xattr(at(dir, 'b'), 'user.g'), BIN);
});

t.test('malformed PAX records are refused and nothing is written', async (t) => {
  const cases: [string, Buffer, RegExp][] = [
    ['length too large', Buffer.from('20 path=abc\n'), /length 20 does not end the record/],
    ['length too small', Buffer.from('9 path=abc\n'), /length 9 does not end the record/],
    ['no length', Buffer.from('path=abc\n'), /no length/],
    ['no KEY=', Buffer.from('12 pathabcd\n'), /no KEY=/],
    ['NUL in a name', paxRecord('path', Buffer.from('a\0b')), /NUL byte/],
  ];
  for (const [what, body, re] of cases) {
    const dir = await tempDir(t, 'gdpax');
    await t.rejects(importTar(streamOf(rawTar([
      { type: 'x', name: 'PaxHeader', body },
      { type: '0', name: 'f', body: Buffer.from('data') },
    ])), dir, opts), re, what);
    t.same(fs.readdirSync(dir), [], `${what}: nothing written`);
  }
  const dir = await tempDir(t, 'gdpax');
  await t.rejects(importTar(streamOf(rawTar([{ type: '5', name: 'd', body: Buffer.from('x') }])), dir, opts),
    /directory entry carries data/, 'a directory with data is refused');
});
