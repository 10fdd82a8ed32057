/**
 * LayerStack (src/layers/stack.ts), the offline reader of a merged view that Diff and
 * Changes use, against the mount's own view (Overlay) over the same layers: every form
 * of whiteout (0/0 device, AUFS `.wh.`, xattr whiteouts in an `opaque=x` dir), opaque
 * dirs (xattr and AUFS), a redirect through a lower symlink, a metacopy file, a name that
 * is not UTF-8 and a symlink to the host must give the same tree, names and types.
 */
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { LayerStack, isDirStat, type MergedDir } from '../../../src/layers';
import { ctx, fixture, ls, put, walk } from '../overlay/fixtures/helpers';
import type { Overlay } from '../../../src/overlay';
import { native } from '../../../src/native';

const PREFIX = 'trusted.overlay.';
const setx = (p: string, name: string, value: string): void => {
  execFileSync('setfattr', ['-n', name, '-v', value, p]);
};
const chardev = (p: string): void => native.mknodat(native.constants.AT_FDCWD, p, fs.constants.S_IFCHR, 0, 0);

/** `path type` for every entry of the merged view, as LayerStack reads it (paths as bytes). */
function stackTree(stack: LayerStack): string[] {
  const out: string[] = [];
  const visit = (rel: string, dir: MergedDir): void => {
    for (const name of stack.names(dir)) {
      const r = stack.lookup(dir, name);
      if (r === null) {
        out.push(`${rel}${name} LISTED-BUT-NOT-FOUND`);
        continue;
      }
      const st = r.upper ?? r.lowers[0]!.stat;
      out.push(`${rel}${name} ${(st.mode & fs.constants.S_IFMT).toString(8)}${r.metacopy ? ' metacopy' : ''}`);
      if (isDirStat(st)) visit(`${rel}${name}/`, stack.child(dir, name, r));
    }
  };
  visit('', stack.root());
  return out;
}

/** The same through the mount's own code. */
function overlayTree(ov: Overlay): string[] {
  const out: string[] = [];
  const visit = (rel: string): void => {
    for (const name of [...ls(ov, rel.replace(/\/$/, ''))].sort((a, b) => Buffer.compare(Buffer.from(a, 'latin1'), Buffer.from(b, 'latin1')))) {
      const a = ov.getattr(ctx, walk(ov, `${rel}${name}`));
      const type = a.mode & fs.constants.S_IFMT;
      out.push(`${rel}${name} ${type.toString(8)}`);
      if (type === fs.constants.S_IFDIR) visit(`${rel}${name}/`);
    }
  };
  visit('');
  return out;
}

t.test('LayerStack shows the tree the mount shows, every marking form included', async (t) => {
  const f = await fixture(3, ([l0, l1, l2], upper) => {
    const [top, mid, low] = [l0!, l1!, l2!];
    const host = path.join(path.dirname(upper), 'host');
    put(host, 'b/secret', 'host');
    // whiteouts: device in the upper, AUFS in a lower, xattr whiteout in an opaque=x dir
    put(low, 'w/dev', 'x');
    put(low, 'w/aufs', 'x');
    put(low, 'w/xw', 'x');
    put(low, 'w/kept', 'x');
    fs.mkdirSync(path.join(upper, 'w'));
    chardev(path.join(upper, 'w', 'dev'));
    put(mid, 'w/.wh.aufs');
    put(top, 'w/xw');
    setx(path.join(top, 'w'), `${PREFIX}opaque`, 'x');
    setx(path.join(top, 'w', 'xw'), `${PREFIX}whiteout`, 'y');
    // opaque dirs: xattr in the upper, AUFS marker in a lower
    put(low, 'o1/gone', 'x');
    put(upper, 'o1/new', 'n');
    setx(path.join(upper, 'o1'), `${PREFIX}opaque`, 'y');
    put(low, 'o2/gone', 'x');
    put(mid, 'o2/.wh..wh..opq');
    put(mid, 'o2/here', 'h');
    // a redirect whose path goes through a lower symlink to the host, under a lower dir
    fs.symlinkSync(host, path.join(low, 'a'));
    put(mid, 'a/b/real', 'r');
    fs.mkdirSync(path.join(upper, 'c'));
    setx(path.join(upper, 'c'), `${PREFIX}redirect`, '/a/b');
    chardev(path.join(upper, 'a'));
    // a metacopy file over a lower file, a name that is not UTF-8, a symlink to the host
    put(low, 'm', 'lower data');
    fs.writeFileSync(path.join(upper, 'm'), '');
    fs.truncateSync(path.join(upper, 'm'), 'lower data'.length);
    setx(path.join(upper, 'm'), `${PREFIX}metacopy`, '');
    fs.writeFileSync(Buffer.from(path.join(top, 'caf\xe9'), 'latin1'), 'x');
    fs.symlinkSync(host, path.join(top, 'to-host'));
  });
  t.teardown(() => f.cleanup());
  const stack = LayerStack.open(f.upper, f.lowers, PREFIX);
  t.teardown(() => stack.close());
  const ours = stackTree(stack);
  t.same(ours.map((l) => l.replace(' metacopy', '')), overlayTree(f.ov), 'the same tree as the mount');
  t.ok(ours.includes('m 100000 metacopy'), 'the metacopy file is found with its lower data');
  t.ok(ours.includes('c/real 100000') && !ours.some((l) => l.includes('secret')), 'the redirect reads the real dir, never the host');
  t.ok(ours.includes('caf\xe9 100000'), 'the non-UTF-8 name, byte exact');
  t.same(ours.filter((l) => l.startsWith('w/')), ['w/kept 100000'], 'all three whiteout forms applied');
  t.same(ours.filter((l) => l.startsWith('o1/') || l.startsWith('o2/')), ['o1/new 100000', 'o2/here 100000'], 'both opaque forms applied');
});
