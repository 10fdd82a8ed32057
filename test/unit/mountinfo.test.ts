import t from 'tap';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mountOf, mountedAt, parseMounts, readMounts } from '../../src/mountinfo';

// a table as /proc/self/mountinfo gives it: optional fields before the '-', a mount
// point with an escaped space, and a FUSE mount stacked on an ext4 one at the same point
const TABLE = [
  '22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw',
  '30 22 0:5 / /dev rw,nosuid master:2 - devtmpfs udev rw,size=10k',
  '41 22 254:1 / /srv/my\\040layers rw,noatime,idmapped - ext4 /dev/vdb rw',
  '50 22 254:2 / /mnt/c rw - ext4 /dev/vdc rw',
  '51 50 0:60 / /mnt/c rw,nosuid,nodev - fuse.stratafs stratafs rw,user_id=0',
  'not a mountinfo line',
  '',
].join('\n');

t.test('every field the callers use comes out of one line', async (t) => {
  const mounts = parseMounts(TABLE);
  t.equal(mounts.length, 5, 'lines without a separator are skipped');
  t.same(mounts[0], { point: '/', fstype: 'ext4', options: ['rw', 'relatime'] });
  t.same(mounts[2], { point: '/srv/my layers', fstype: 'ext4', options: ['rw', 'noatime', 'idmapped'] }, '\\040 is a space');
  t.equal(mounts[4].fstype, 'fuse.stratafs', 'the type after the optional fields');
});

t.test('the mount exactly at a path is the top one', async (t) => {
  const mounts = parseMounts(TABLE);
  t.equal(mountedAt('/mnt/c', mounts)?.fstype, 'fuse.stratafs');
  t.same(mountedAt('/mnt/c', mounts)?.options, ['rw', 'nosuid', 'nodev']);
  t.equal(mountedAt('/srv/my layers', mounts)?.fstype, 'ext4');
  t.equal(mountedAt('/mnt', mounts), undefined, 'a directory under a mount is not mounted at');
});

t.test('the mount a directory is on: the longest mount point above its real path', async (t) => {
  // only real directories can be resolved: a scratch tree, asked of a table naming it
  const root = mkdtempSync(join(tmpdir(), 'stratafs-mountinfo-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  mkdirSync(join(root, 'a b', 'c'), { recursive: true });
  mkdirSync(join(root, 'ab'));
  const esc = (p: string): string => p.replace(/ /g, '\\040');
  const mounts = parseMounts([
    `1 0 8:1 / / rw - ext4 /dev/sda rw`,
    `2 1 8:2 / ${esc(join(root, 'a b'))} rw,idmapped - xfs /dev/sdb rw`,
    `3 2 8:3 / ${esc(join(root, 'a b'))} ro - btrfs /dev/sdc rw`,
  ].join('\n'));
  t.equal(mountOf(join(root, 'a b', 'c'), mounts)?.fstype, 'btrfs', 'stacked: the last listed');
  t.equal(mountOf(join(root, 'a b'), mounts)?.point, join(root, 'a b'));
  t.equal(mountOf(join(root, 'ab'), mounts)?.fstype, 'ext4', 'a prefix of the name is not a parent');
  t.equal(mountOf(join(root, 'missing'), mounts), undefined, 'a path that does not resolve');
});

t.test('our own table', async (t) => {
  const mounts = readMounts();
  t.ok(mounts.some((m) => m.point === '/'), 'the root is mounted');
  t.equal(mountedAt('/proc')?.fstype, 'proc');
  t.equal(mountOf('/proc/self')?.point, '/proc');
});
