/**
 * fsync, fdatasync and fsync of a directory through the mount reach the disk (the
 * daemon's `sync` fault point, traced to a file, is where it calls fsync/fdatasync on
 * the layer file); with `volatile` none of them is synced. The data itself is checked
 * in the upper after each run.
 */
import t from 'tap';
import * as fs from 'node:fs';
import { forceUnmount, makeLayers, mountWith, py } from './lib';

const SYNCS = `
import os, sys
m = sys.argv[1]
fd = os.open(m + '/new', os.O_CREAT | os.O_WRONLY, 0o644)
os.write(fd, b'new data')
os.fsync(fd)
os.write(fd, b' more')
os.fdatasync(fd)
os.close(fd)
fd = os.open(m + '/lowerfile', os.O_WRONLY | os.O_APPEND)
os.write(fd, b'+appended')
os.fsync(fd)
os.close(fd)
dfd = os.open(m, os.O_RDONLY | os.O_DIRECTORY)
os.fsync(dfd)
os.close(dfd)
print('ok')
`;

for (const volatile of [false, true]) {
  t.test(volatile ? 'volatile: nothing is synced' : 'fsync, fdatasync and fsync of a dir reach the disk', async (t) => {
    const l = makeLayers(t, 'sync');
    fs.writeFileSync(`${l.lower}/lowerfile`, 'lower');
    const trace = `${l.root}/trace`;
    fs.writeFileSync(trace, '');
    const m = await mountWith(l, { STRATAFS_FAULTS: 'sync:trace', STRATAFS_FAULTS_TRACE: trace }, volatile ? ',volatile' : '');
    t.equal(m.code, 0, m.stderr);
    const r = await py(SYNCS, [l.mnt]);
    t.equal(r.stdout.trim(), 'ok', r.stderr);
    forceUnmount(l.mnt);
    const synced = fs.readFileSync(trace, 'utf8').split('\n').filter((x) => x === 'sync').length;
    // fsync + fdatasync of new, fsync of the copied-up lowerfile, the dir fsync (the
    // copy-up's own flush may run inside the data copy job, not through this point)
    if (volatile) t.equal(synced, 0, 'no sync reached the disk');
    else t.ok(synced >= 4, `every sync reached the disk (${synced} syncs)`);
    t.equal(fs.readFileSync(`${l.upper}/new`, 'utf8'), 'new data more');
    t.equal(fs.readFileSync(`${l.upper}/lowerfile`, 'utf8'), 'lower+appended');
  });
}
