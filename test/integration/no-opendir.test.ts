/**
 * Directories opened by the kernel itself (FUSE_NO_OPENDIR_SUPPORT): on a real mount a
 * `find` sends at most one OPENDIR (answered ENOSYS) and no RELEASEDIR, and a listing
 * read in pieces while the directory changes through the mount lists each name once,
 * every name that stayed included. The mount is served by this process (MountServer);
 * every access to it is made by a child process.
 */
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { MountServer } from '../../src/server/mount-server';
import { servedSpec } from '../lib/mount-spec';
import { tempDir } from '../lib/tmp';
import { runOk } from '../lib/proc';

t.test('a find sends no OPENDIR or RELEASEDIR per directory', async (t) => {
  const base = await tempDir(t, 'noopendir');
  const lower = path.join(base, 'lower');
  for (let i = 0; i < 40; i++) {
    fs.mkdirSync(path.join(lower, `d${i}`, 'sub'), { recursive: true });
    fs.writeFileSync(path.join(lower, `d${i}`, 'sub', 'f'), '');
  }
  const server = new MountServer();
  t.teardown(() => server.closeAll());
  const s = servedSpec(base, lower);
  fs.mkdirSync(path.join(s.upperdir!, 'd3', 'sub', 'up'), { recursive: true });
  const mounted = await server.mount(s);
  const out = await runOk('find', [s.mountpoint], { timeoutMs: 60_000 });
  t.equal(out.trim().split('\n').length, 1 + 40 * 3 + 1, 'every entry found (the upper\'s too)');
  await runOk('find', [s.mountpoint], { timeoutMs: 60_000 });
  const counts = mounted.requestCounts();
  t.comment(JSON.stringify(counts));
  t.ok((counts.OPENDIR ?? 0) <= 1, `at most one OPENDIR for 82 directories listed twice (${counts.OPENDIR ?? 0})`);
  t.equal(counts.RELEASEDIR ?? 0, 0, 'no RELEASEDIR');
  t.ok((counts.READDIRPLUS ?? 0) + (counts.READDIR ?? 0) >= 82, 'the listings came without handles');
  await server.unmount(s.mountpoint);
});

// lists `dir` with readdir(3) (glibc's buffer: a few FUSE requests per call) and changes
// it through the mount after the first 100 names: prints the names listed
const LIST_WHILE_CHANGING = `
import os, sys
d = sys.argv[1]
seen = []
with os.scandir(d) as it:
    for i, e in enumerate(it):
        seen.append(e.name)
        if i == 100:
            for n in range(50):
                open(os.path.join(d, 'add%d' % n), 'w').close()
            for n in range(0, 3000, 7):
                os.unlink(os.path.join(d, 'f%d' % n))
print('\\n'.join(seen))
`;

t.test('a listing read in pieces while the directory changes repeats nothing and skips nothing that stayed', async (t) => {
  const base = await tempDir(t, 'noopendir');
  const lower = path.join(base, 'lower');
  fs.mkdirSync(path.join(lower, 'big'), { recursive: true });
  for (let i = 0; i < 3000; i++) fs.writeFileSync(path.join(lower, 'big', `f${i}`), '');
  const server = new MountServer();
  t.teardown(() => server.closeAll());
  const s = servedSpec(base, lower);
  fs.mkdirSync(path.join(s.upperdir!, 'big'));
  for (let i = 0; i < 1000; i++) fs.writeFileSync(path.join(s.upperdir!, 'big', `f${i}`), 'upper');
  await server.mount(s);
  const big = path.join(s.mountpoint, 'big');
  for (const round of ['cold', 'warm']) {
    if (round === 'warm') {
      // put the removed names back as they were: the kernel's cached listing is dropped
      await runOk('/bin/sh', ['-c', `cd ${big} && rm -f add* && for n in $(seq 0 7 2999); do : > f$n; done`], { timeoutMs: 60_000 });
      await runOk('ls', ['-f', big], { timeoutMs: 60_000 });
    }
    const names = (await runOk('python3', ['-c', LIST_WHILE_CHANGING, big], { timeoutMs: 60_000 })).trim().split('\n');
    t.equal(new Set(names).size, names.length, `${round}: no name twice`);
    const missing = [];
    for (let i = 0; i < 3000; i++) if (i % 7 !== 0 && !names.includes(`f${i}`)) missing.push(`f${i}`);
    t.same(missing, [], `${round}: every name that stayed listed`);
    const after = (await runOk('ls', ['-f', big], { timeoutMs: 60_000 })).trim().split('\n');
    t.equal(after.filter((n) => n.startsWith('add')).length, 50, `${round}: a listing from the start sees the additions`);
    t.notOk(after.includes('f7'), `${round}: and not the removals`);
  }
  await server.unmount(s.mountpoint);
});
