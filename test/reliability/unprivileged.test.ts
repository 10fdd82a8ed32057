/**
 * What an unprivileged caller meets, against kernel overlayfs where it is the reference:
 * - `/dev/fuse` at 0600 and a non-root user mounting: one line saying so, not "EIO";
 * - trusted.* names are not listed to callers without CAP_SYS_ADMIN (uid 65534 lists
 *   the same names through kernel overlayfs and stratafs; root sees trusted.* in both).
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { makeLayers } from './lib';
import { mountKernelOverlay, mountStratafs, STRATAFS_BIN } from '../lib/mounts';

const NOBODY = 65534;
const asNobody = ['setpriv', `--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', '--'];

t.test('/dev/fuse 0600: a non-root mount says why', async (t) => {
  const l = makeLayers(t, 'devfuse');
  fs.writeFileSync(`${l.lower}/f`, 'x');
  for (const d of [l.upper, l.work, l.mnt]) fs.chownSync(d, NOBODY, NOBODY);
  // a 0600 node of the device over /dev/fuse, in a private mount namespace only
  const dev = fs.statSync('/dev/fuse');
  const major = Math.floor(dev.rdev / 256) & 0xfff;
  const minor = (dev.rdev & 0xff) | ((dev.rdev >> 12) & 0xfff00);
  const devDir = `${l.root}/dev`;
  fs.mkdirSync(devDir);
  const script = [
    'set -e',
    `mount -t tmpfs -o mode=0755 tmpfs ${devDir}`,
    `mknod -m 0600 ${devDir}/fuse c ${major} ${minor}`,
    `mount --bind ${devDir}/fuse /dev/fuse`,
    `exec ${asNobody.join(' ')} env -u NODE_OPTIONS "$@"`,
  ].join('\n');
  const r = spawnSync('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', script, 'sh',
    STRATAFS_BIN, '-o', `lowerdir=${l.lower},upperdir=${l.upper},workdir=${l.work}`, l.mnt], { encoding: 'utf8', timeout: 30_000 });
  t.not(r.status, 0, 'refused');
  t.match(r.stderr, /\/dev\/fuse is not readable and writable by uid 65534 \(EACCES\)/, `names the device: ${r.stderr.trim()}`);
  t.equal(r.stderr.trim().split('\n').length, 1, 'one line');
  t.same(fs.readdirSync(l.upper), [], 'the upper is untouched');
});

/** xattr names of FILE listed by `getfattr` as uid UID (getfattr -m - lists every namespace). */
function names(file: string, uid: number): string[] {
  const argv = ['getfattr', '--absolute-names', '-m', '-', file];
  const r = uid === 0 ? spawnSync(argv[0], argv.slice(1), { encoding: 'utf8' }) : spawnSync(asNobody[0], [...asNobody.slice(1), ...argv], { encoding: 'utf8' });
  return r.stdout.split('\n').filter((n) => n !== '' && !n.startsWith('#')).sort();
}

t.test('trusted.* names are not listed to uid 65534, as the kernel does', async (t) => {
  const l = makeLayers(t, 'trustedls');
  fs.writeFileSync(`${l.lower}/f`, 'x');
  fs.chmodSync(`${l.lower}/f`, 0o644);
  spawnSync('setfattr', ['-n', 'trusted.secret', '-v', 'hidden', `${l.lower}/f`]);
  spawnSync('setfattr', ['-n', 'user.open', '-v', 'shown', `${l.lower}/f`]);
  const seen: Record<string, { root: string[]; nobody: string[] }> = {};
  for (const target of ['kernel', 'stratafs'] as const) {
    const upper = `${l.root}/${target}-upper`;
    const work = `${l.root}/${target}-work`;
    const mnt = `${l.root}/${target}-mnt`;
    for (const d of [upper, work, mnt]) fs.mkdirSync(d);
    fs.chmodSync(upper, 0o755);
    const spec = { lowers: [l.lower], upper, work, mnt };
    const m = target === 'kernel' ? await mountKernelOverlay(spec) : await mountStratafs(spec);
    t.teardown(() => m.unmount());
    seen[target] = { root: names(`${mnt}/f`, 0), nobody: names(`${mnt}/f`, NOBODY) };
    await m.unmount();
  }
  t.same(seen.kernel, { root: ['trusted.secret', 'user.open'], nobody: ['user.open'] }, 'kernel overlayfs: trusted.* listed to root only');
  t.same(seen.stratafs, seen.kernel, 'stratafs lists the same names to each');
});
