/**
 * ApplyDiff with xattrs the layer filesystem will not take: skipped with a warning, as
 * Docker's own drivers do (ENOTSUP/EOPNOTSUPP and EPERM), while any other failure still
 * fails the import.
 */
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { importTar } from '../../../src/graphdriver/tar-import';
import { native } from '../../../src/native';
import { tempDir } from '../../lib/tmp';
import { makeTar, streamOf } from './tarlib';

const xattr = (file: string, name: string): string | undefined => {
  const v = native.getxattrOrErrno(file, name, false);
  return typeof v === 'number' ? undefined : v.toString();
};

t.test('an xattr the filesystem refuses is skipped with a warning; the rest of the layer is imported', async (t) => {
  const dir = await tempDir(t, 'gdxattr');
  const warnings: string[] = [];
  const tarball = await makeTar([
    // no such namespace: EOPNOTSUPP
    { name: 'f', data: 'data\n', pax: { 'SCHILY.xattr.nosuchns.x': 'y', 'SCHILY.xattr.user.ok': 'kept' } },
    // user.* on a symlink: EPERM
    { name: 'link', type: 'symlink', linkname: 'f', pax: { 'SCHILY.xattr.user.note': 'x' } },
    { name: 'after', data: 'after\n' },
  ]);
  const r = await importTar(streamOf(tarball), dir, { xattrPrefix: 'trusted.overlay.', onWarning: (m) => warnings.push(m) });
  t.equal(r.entries, 3);
  t.equal(fs.readFileSync(path.join(dir, 'f'), 'utf8'), 'data\n', 'the file is there');
  t.equal(xattr(path.join(dir, 'f'), 'user.ok'), 'kept', 'its other xattr is set');
  t.equal(fs.readlinkSync(path.join(dir, 'link')), 'f', 'the symlink is there');
  t.equal(fs.readFileSync(path.join(dir, 'after'), 'utf8'), 'after\n', 'entries after it are imported');
  t.equal(warnings.length, 2, warnings.join('; '));
  t.match(warnings.join('\n'), /nosuchns\.x of "f": EOPNOTSUPP/);
  t.match(warnings.join('\n'), /user\.note of "link": EPERM/);
});

t.test('other xattr failures still fail the import', async (t) => {
  const dir = await tempDir(t, 'gdxattr');
  const tarball = await makeTar([{ name: 'f', data: 'x', pax: { 'SCHILY.xattr.user.big': 'v'.repeat(70_000) } }]);
  await t.rejects(importTar(streamOf(tarball), dir, { xattrPrefix: 'trusted.overlay.' }), { code: 'E2BIG' }, 'a value over 64 KiB (E2BIG)');
});
