/**
 * Symlinks in the layers that point out of them, in the middle of paths and as the
 * final component, against a canary directory on the host: whatever is done through
 * the mount (read, write, create, chmod, chown, xattrs, truncate, rename, link, copy-up
 * of the objects around the links), nothing of the canary may change, and nothing of it
 * may show in the merged view.
 *
 * The kernel itself follows a symlink met in the merged view (that is the caller's own
 * path walk, as on any filesystem), so operations on the links' final components use
 * their no-follow forms; the escapes tested are those the daemon could make by walking
 * layer paths itself: a name that is a directory in one layer and a symlink to the host
 * in another, in the middle of a path, and redirects.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { forceUnmount, makeLayers, mountWith, py } from '../reliability/lib';

/** Everything about a host tree that a write, chmod, chown, utimes or xattr would change. */
function fingerprint(dir: string): string {
  const find = spawnSync('find', [dir, '-printf', '%p %y %m %U %G %s %T@ %C@\\n'], { encoding: 'utf8' }).stdout;
  const attrs = spawnSync('getfattr', ['-R', '-d', '-m', '-', '--absolute-names', dir], { encoding: 'utf8' }).stdout;
  const data = spawnSync('sh', ['-c', `find ${dir} -type f -exec sha256sum {} + | sort`], { encoding: 'utf8' }).stdout;
  return `${find.split('\n').sort().join('\n')}\n${attrs}\n${data}`;
}

/** Tries every operation on every path through the mount; failures are expected and ignored. */
const ATTACK = `
import os, sys
m = sys.argv[1]
paths = sys.argv[2:]
def attempt(f, *a, **k):
    try:
        f(*a, **k)
    except (OSError, NotImplementedError):
        pass
for rel in paths:
    p = os.path.join(m, rel)
    if os.path.islink(p):
        # the link itself, never through it (the kernel would follow it: the caller's walk)
        attempt(os.readlink, p)
        attempt(os.chown, p, 4242, 4242, follow_symlinks=False)
        attempt(os.utime, p, (1, 1), follow_symlinks=False)
        attempt(os.setxattr, p, 'trusted.pwned', b'1', follow_symlinks=False)
        attempt(os.link, p, p + '.hard', follow_symlinks=False)
        attempt(os.rename, p, p + '.renamed')
        attempt(os.rename, p + '.renamed', p)
        continue
    attempt(lambda: open(p, 'rb').read())
    attempt(os.listdir, p)
    attempt(lambda: open(p, 'ab').write(b'pwned'))
    attempt(lambda: open(os.path.join(p, 'secret'), 'ab').write(b'pwned'))
    attempt(lambda: open(os.path.join(p, 'created'), 'wb').write(b'pwned'))
    attempt(os.truncate, os.path.join(p, 'secret'), 0)
    attempt(os.chmod, p, 0o777)
    attempt(os.chmod, os.path.join(p, 'secret'), 0o777)
    attempt(os.chown, p, 4242, 4242)
    attempt(os.chown, os.path.join(p, 'secret'), 4242, 4242)
    attempt(os.utime, p, (1, 1))
    attempt(os.utime, os.path.join(p, 'secret'), (1, 1))
    attempt(os.setxattr, p, 'user.pwned', b'1')
    attempt(os.setxattr, os.path.join(p, 'secret'), 'user.pwned', b'1')
    attempt(os.removexattr, os.path.join(p, 'secret'), 'user.keep')
    attempt(os.mkdir, os.path.join(p, 'newdir'))
    attempt(os.symlink, '/etc/passwd', os.path.join(p, 'newlink'))
    attempt(os.link, os.path.join(p, 'secret'), os.path.join(m, 'stolen-' + rel.replace('/', '_')))
    attempt(os.rename, os.path.join(p, 'secret'), os.path.join(p, 'moved'))
    attempt(os.unlink, os.path.join(p, 'secret'))
    attempt(os.rename, p, p + '.renamed')
    attempt(os.rename, p + '.renamed', p)
seen = []
for rel in paths:
    p = os.path.join(m, rel)
    try:
        if not os.path.islink(p) and os.path.isdir(p):
            seen += [rel + '/' + n for n in os.listdir(p)]
    except OSError:
        pass
print('\\n'.join(sorted(seen)))
`;

t.test('symlinks out of the layers never let the daemon touch the host', async (t) => {
  const l = makeLayers(t, 'hostile');
  const canary = fs.mkdtempSync('/tmp/stratafs-canary-');
  t.teardown(() => fs.rmSync(canary, { recursive: true, force: true }));
  fs.chmodSync(canary, 0o755);
  fs.writeFileSync(`${canary}/secret`, 'host data\n', { mode: 0o600 });
  fs.mkdirSync(`${canary}/q`);
  fs.writeFileSync(`${canary}/q/secret`, 'host data q\n', { mode: 0o600 });
  fs.mkdirSync(`${canary}/rl`);
  fs.writeFileSync(`${canary}/rl/secret`, 'host data rl\n');
  spawnSync('setfattr', ['-n', 'user.keep', '-v', '1', `${canary}/secret`]);
  const before = fingerprint(canary);
  const up = (n: number): string => '../'.repeat(n);

  const top = l.lower;
  const bottom = `${l.root}/lower2`;
  fs.mkdirSync(bottom);
  // a name that is a directory in the top layer and a symlink to the host below it
  fs.mkdirSync(`${top}/m`);
  fs.writeFileSync(`${top}/m/own`, 'mine');
  fs.symlinkSync(canary, `${bottom}/m`);
  // the other way round: a symlink on top of a directory
  fs.symlinkSync(canary, `${top}/n`);
  fs.mkdirSync(`${bottom}/n`);
  fs.writeFileSync(`${bottom}/n/secret`, 'layer data');
  // a symlink in the middle of a path in the lower layer: p/q in the top, p -> host below
  fs.mkdirSync(`${top}/p/q`, { recursive: true });
  fs.symlinkSync(canary, `${bottom}/p`);
  // relative symlinks climbing out, in the middle and at the end
  fs.mkdirSync(`${top}/deep/er`, { recursive: true });
  fs.symlinkSync(`${up(12)}${canary.slice(1)}`, `${bottom}/deep`);
  fs.symlinkSync(`${up(12)}${canary.slice(1)}/secret`, `${top}/rel-file`);
  fs.symlinkSync('/', `${top}/etc`);
  // the upper: a symlink to the host over a lower directory, and redirects through links
  fs.mkdirSync(`${top}/u`);
  fs.writeFileSync(`${top}/u/own`, 'mine');
  fs.symlinkSync(canary, `${l.upper}/u`);
  fs.symlinkSync(canary, `${top}/rl`);
  for (const [dir, redirect] of [['r1', '/rl'], ['r2', '/p/q'], ['r3', `/${up(10)}${canary.slice(1)}`], ['r4', '/etc/tmp']]) {
    fs.mkdirSync(`${l.upper}/${dir}`);
    spawnSync('setfattr', ['-n', 'trusted.overlay.redirect', '-v', redirect, `${l.upper}/${dir}`]);
  }
  l.lower = `${top}:${bottom}`;
  const m = await mountWith(l);
  t.equal(m.code, 0, m.stderr);

  const targets = ['m', 'n', 'p', 'p/q', 'deep', 'deep/er', 'rel-file', 'etc', 'u', 'rl', 'r1', 'r2', 'r3', 'r4'];
  const r = await py(ATTACK, [l.mnt, ...targets], 120_000);
  t.equal(r.status, 0, r.stderr);
  const seen = r.stdout.trim().split('\n').filter(Boolean);
  t.notOk(seen.some((s) => /secret/.test(s) && !s.startsWith('n/')), `no host file shows in a merged directory: ${seen.join(' ')}`);
  t.ok(seen.includes('m/own'), 'the top directory m still merges its own content');
  forceUnmount(l.mnt);
  t.equal(fingerprint(canary), before, 'the canary is untouched: content, modes, owners, times, xattrs, no new names');
  for (const n of ['n', 'rel-file', 'etc', 'u', 'rl']) {
    const s = fs.lstatSync(`${l.upper}/${n}`);
    t.ok(s.isSymbolicLink(), `upper ${n} is the copied-up link itself`);
    t.equal(s.uid, 4242, `and it was chowned, not its target`);
  }
  t.ok(fs.readdirSync(path.dirname(canary)).includes(path.basename(canary)), 'canary still there');
});
