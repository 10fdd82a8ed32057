/**
 * Xattr requests the device reader answers itself (native-bindings/src/fuse_known.c):
 * once the overlay knows a node has no xattrs a caller can see, its GETXATTRs and
 * LISTXATTRs are answered without reaching JS, with the answers the overlay gives; a change (setxattr, copy-up, removexattr) is seen at once,
 * a file with xattrs is never answered so, and a node leaves the reader's set with the
 * inode table. The mount is served by this process (MountServer); every access to it is
 * made by a child process.
 */
import t, { type Test } from 'tap';
import { readlink } from 'node:fs/promises';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { MountServer, type ServedMount } from '../../src/server/mount-server';
import { servedSpec } from '../lib/mount-spec';
import { tempDir } from '../lib/tmp';
import { runOk, waitFor } from '../lib/proc';
import { setEnableUring, uringUnavailable } from '../lib/uring';

// argv: rounds, then paths; prints, per round and path, the getxattr of NAME (or the
// errno's name) and the sorted list of names, as JSON lines
const ASK = `
import errno, json, os, sys
rounds, paths = int(sys.argv[1]), sys.argv[2:]
for _ in range(rounds):
    for p in paths:
        name = 'user.x' if os.path.basename(p).startswith('with') else 'security.capability'
        try:
            value = os.getxattr(p, name, follow_symlinks=False).decode()
        except OSError as e:
            value = errno.errorcode[e.errno]
        print(json.dumps([os.path.basename(p), value, sorted(os.listxattr(p, follow_symlinks=False))]))
`;

async function ask(rounds: number, paths: string[]): Promise<unknown[]> {
  const out = await runOk('python3', ['-c', ASK, String(rounds), ...paths], { timeoutMs: 60_000 });
  return out.trim().split('\n').map((l) => JSON.parse(l) as unknown);
}

function answered(m: ServedMount): { GETXATTR: number; LISTXATTR: number; nodes: number } {
  return m.answeredByReader();
}

/** io_uring fds of this process (an in-process mount over the ring has one) */
async function rings(): Promise<number> {
  let n = 0;
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    if ((await readlink(`/proc/self/fd/${fd}`).catch(() => '')) === 'anon_inode:[io_uring]') n++;
  }
  return n;
}

for (const transport of ['/dev/fuse', 'io_uring'] as const) {
  const skip = transport === 'io_uring' ? uringUnavailable() : undefined;
  t.test(`the reader answers the xattr requests of nodes without xattrs, as the overlay would (${transport})`, { skip }, async (t) => {
    if (transport === 'io_uring') await setEnableUring(t, true);
    await answersAsTheOverlay(t, transport);
  });
}

async function answersAsTheOverlay(t: Test, transport: '/dev/fuse' | 'io_uring'): Promise<void> {
  const base = await tempDir(t, 'answers');
  const lower = path.join(base, 'lower');
  fs.mkdirSync(path.join(lower, 'dir'), { recursive: true });
  fs.writeFileSync(path.join(lower, 'plain'), 'p');
  fs.writeFileSync(path.join(lower, 'withx'), 'w');
  fs.symlinkSync('plain', path.join(lower, 'link'));
  await runOk('setfattr', ['-n', 'user.x', '-v', 'lower', path.join(lower, 'withx')]);
  const server = new MountServer();
  t.teardown(() => server.closeAll());
  const s = { ...servedSpec(base, lower), uring: transport === 'io_uring' ? 'auto' as const : 'off' as const };
  fs.writeFileSync(path.join(s.upperdir!, 'up'), 'u');
  const ringsBefore = await rings();
  const m = await server.mount(s);
  t.equal(await rings(), ringsBefore + (transport === 'io_uring' ? 1 : 0), `served through ${transport}`);
  const at = (n: string): string => path.join(s.mountpoint, n);

  const rounds = 5;
  const lines = await ask(rounds, ['plain', 'dir', 'link', 'withx', 'up'].map(at));
  const one = [
    ['plain', 'ENODATA', []], ['dir', 'ENODATA', []], ['link', 'ENODATA', []],
    ['withx', 'lower', ['user.x']], ['up', 'ENODATA', []],
  ];
  t.same(lines, Array.from({ length: rounds }, () => one).flat(), 'every answer as the overlay gives it');
  const a = answered(m);
  // the first GETXATTR of each node without xattrs reaches the overlay, which learns it
  // (a lower node from its lower index, the upper file by listing it); the LISTXATTRs
  // after it are the reader's
  t.equal(a.GETXATTR, 4 * (rounds - 1), 'GETXATTR: all but the first of plain, dir, link, up');
  t.equal(a.LISTXATTR, 4 * rounds, 'LISTXATTR: all of plain, dir, link and up, none of withx');
  t.equal(a.nodes, 4, 'the reader knows plain, dir, link and up');
  const counts = m.requestCounts();
  t.equal(counts.GETXATTR, 5 * rounds, 'requestCounts counts those the reader answered');
  t.equal(counts.LISTXATTR, 5 * rounds);

  // a change through the mount is seen at once: copy-up with a new name, then removed
  await runOk('setfattr', ['-n', 'user.x', '-v', 'new', at('plain')]);
  await runOk('setfattr', ['-n', 'user.x', '-v', 'dirs', at('dir')]);
  await runOk('setfattr', ['-n', 'user.x', '-v', 'up', at('up')]);
  t.same(await ask(2, ['plain', 'dir', 'up'].map(at)), Array.from({ length: 2 }, () => [
    ['plain', 'ENODATA', ['user.x']], ['dir', 'ENODATA', ['user.x']], ['up', 'ENODATA', ['user.x']],
  ]).flat(), 'names set through the mount are listed (security.capability is still absent)');
  t.same(fs.readFileSync(path.join(s.upperdir!, 'plain'), 'utf8'), 'p', 'plain was copied up');
  const b = answered(m);
  t.equal(b.GETXATTR, a.GETXATTR, 'nothing answered by the reader while the nodes had names');
  t.equal(b.nodes, 1, 'the nodes given names left the reader\'s set (link stays)');
  await runOk('setfattr', ['-x', 'user.x', at('plain')]);
  t.same(await ask(3, [at('plain')]), Array.from({ length: 3 }, () => ['plain', 'ENODATA', []]), 'and gone once removed');
  const c = answered(m);
  t.equal(c.GETXATTR, b.GETXATTR + 2, 'then the reader answers its GETXATTRs again, after the first');
  t.equal(c.LISTXATTR, b.LISTXATTR + 2, 'and its LISTXATTRs, after the listing that found none');
  await server.unmount(s.mountpoint);
}

t.test('nodes leave the reader\'s set with the inode table', async (t) => {
  const base = await tempDir(t, 'answers');
  const lower = path.join(base, 'lower');
  fs.mkdirSync(path.join(lower, 'many'), { recursive: true });
  const files = 3000;
  for (let i = 0; i < files; i++) fs.writeFileSync(path.join(lower, 'many', `f${i}`), '');
  const server = new MountServer();
  t.teardown(() => server.closeAll());
  const s = servedSpec(base, lower);
  const m = await server.mount(s);
  const dir = path.join(s.mountpoint, 'many');
  // `ls -l` asks each entry its SELinux label (its ACL the kernel caches): twice over, the
  // second time answered by the reader
  const names = await runOk('python3', ['-c', `
import os, sys
d = sys.argv[1]
names = sorted(os.listdir(d))
for _ in range(2):
    for n in names:
        try:
            os.getxattr(os.path.join(d, n), 'security.selinux', follow_symlinks=False)
        except OSError:
            pass
print(len(names))
`, dir], { timeoutMs: 60_000 });
  t.equal(names.trim(), String(files));
  t.equal(answered(m).nodes, files, 'every file known to have no xattrs (a table of several growths)');
  // the first round's first questions reach the overlay, which then has the walk's
  // read-ahead list the names of the rest (learnReadAhead): those the reader answers too
  t.equal(m.requestCounts().GETXATTR, 2 * files, 'both rounds asked');
  t.ok(answered(m).GETXATTR >= files, `at least the second round answered by the reader (${answered(m).GETXATTR})`);
  // removed through the mount: whiteouts, and the kernel forgets the nodes
  await runOk('rm', ['-rf', dir], { timeoutMs: 60_000 });
  const emptied = await waitFor(() => answered(m).nodes === 0, 10_000);
  t.ok(emptied, `the reader's set emptied as the kernel forgot the nodes (${answered(m).nodes} left)`);
  t.equal(await runOk('ls', ['-A', s.mountpoint]), '', 'the directory is gone from the merged view');
  await server.unmount(s.mountpoint);
});

// the naive diff of containers-storage: the names of a directory first, then lstat,
// lgetxattr security.capability and llistxattr of each entry, directory by directory;
// prints the number of entries
const DIFF_WALK = `
import os, sys
count = 0
def walk(d):
    global count
    for n in os.listdir(d):
        p = os.path.join(d, n)
        st = os.lstat(p)
        try:
            os.getxattr(p, 'security.capability', follow_symlinks=False)
        except OSError:
            pass
        os.listxattr(p, follow_symlinks=False)
        count += 1
        if os.path.isdir(p) and not os.path.islink(p):
            walk(p)
walk(sys.argv[1])
print(count)
`;

t.test('a walk that asks the xattrs of every entry has them answered by the reader from the first question of each', async (t) => {
  const base = await tempDir(t, 'answers');
  const lower = path.join(base, 'lower');
  const dirs = 20;
  const per = 50;
  for (let d = 0; d < dirs; d++) {
    fs.mkdirSync(path.join(lower, `d${d}`), { recursive: true });
    for (let i = 0; i < per; i++) fs.writeFileSync(path.join(lower, `d${d}`, `f${i}`), '');
  }
  await runOk('setfattr', ['-n', 'user.x', '-v', '1', path.join(lower, 'd7', 'f3')]);
  const server = new MountServer();
  t.teardown(() => server.closeAll());
  const s = servedSpec(base, lower);
  const m = await server.mount(s);
  const entries = dirs * (per + 1);
  t.equal((await runOk('python3', ['-c', DIFF_WALK, s.mountpoint], { timeoutMs: 60_000 })).trim(), String(entries));
  const a = answered(m);
  const counts = m.requestCounts();
  t.equal(counts.GETXATTR, entries, 'one GETXATTR per entry');
  t.equal(counts.LISTXATTR, entries, 'one LISTXATTR per entry');
  // the overlay learns a node has none when the walk's read-ahead listed its names,
  // which it does once the first question came: every GETXATTR but those of the first
  // level and of the first directory entered (listed before it), and of the file that
  // has a name; every LISTXATTR but the latter's (each comes after a GETXATTR)
  t.ok(a.GETXATTR >= entries - dirs - per - 1, `GETXATTRs answered by the reader: ${a.GETXATTR} of ${entries}`);
  t.equal(a.LISTXATTR, entries - 1, 'LISTXATTRs answered by the reader');
  t.same(await ask(1, [path.join(s.mountpoint, 'd7', 'f3')]), [['f3', 'ENODATA', ['user.x']]], 'the file with a name lists it');
  await server.unmount(s.mountpoint);
});
