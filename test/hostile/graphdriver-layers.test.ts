/**
 * Hostile image layers against the graph driver's Diff, Changes and DiffSize, driven
 * through the plugin's HTTP API as dockerd drives it, with a real container mount.
 *
 * A lower layer holds a symlink to a host directory; a layer above it holds a directory
 * at the same name, which hides the symlink in the merged view (as on kernel overlayfs).
 * The container renames a directory below it (`mv /a/b /c`: a redirect). Diff and
 * Changes must read `c` the way the mount shows it, through the layers and never
 * through the symlink: the host's file must not appear, `c`'s real contents must.
 *
 * Also: a name that is not UTF-8 is listed by Changes byte for byte; Changes lists the
 * unchanged ancestors of a change as modified (as Docker's naive diff and overlay2 do);
 * and a long Changes walk does not stop the mounts the same process serves.
 */
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import { tempDir, type Teardown } from '../lib/tmp';
import { runOk } from '../lib/proc';
import { makeTar, readTar, type Member } from '../unit/graphdriver/tarlib';
import { call, post, startPlugin } from '../unit/graphdriver/pluginlib';

const SECRET = 'host secret: must never leave the host';
const REAL = 'layer 2 contents\n';

interface Plugin {
  sock: string;
  home: string;
  host: string;
}

/** A plugin with its home, and a host directory HOST/b/secret.txt for the layers to aim at. */
async function plugin(t: Teardown): Promise<Plugin> {
  const base = await tempDir(t, 'gdhostile');
  const host = path.join(base, 'host');
  fs.mkdirSync(path.join(host, 'b'), { recursive: true });
  fs.writeFileSync(path.join(host, 'b', 'secret.txt'), SECRET);
  fs.writeFileSync(path.join(host, 'secret.txt'), SECRET);
  const p = { sock: path.join(base, 'p.sock'), home: path.join(base, 'home'), host };
  await startPlugin(t, p.sock);
  const init = await call(p.sock, 'Init', { Home: p.home });
  if (init.status !== 200) throw new Error(`Init: ${JSON.stringify(init.reply)}`);
  return p;
}

/** Image layers (ids l1, l2, ... bottom first), then a container layer `c` over the top one, mounted. */
async function image(t: Teardown, p: Plugin, layers: Member[][]): Promise<string> {
  let parent: string | undefined;
  for (const [i, members] of layers.entries()) {
    const id = `l${i + 1}`;
    await call(p.sock, 'Create', { ID: id, Parent: parent });
    const r = await post(p.sock, `/GraphDriver.ApplyDiff?id=${id}`, await makeTar(members));
    if (r.status !== 200) throw new Error(`ApplyDiff ${id}: ${r.body.toString()}`);
    parent = id;
  }
  await call(p.sock, 'CreateReadWrite', { ID: 'c', Parent: parent });
  const got = await call(p.sock, 'Get', { ID: 'c' });
  if (got.status !== 200) throw new Error(`Get: ${JSON.stringify(got.reply)}`);
  t.teardown(() => call(p.sock, 'Put', { ID: 'c' }));
  return got.reply.Dir as string;
}

const sh = (script: string): Promise<string> => runOk('/bin/sh', ['-c', script], { timeoutMs: 30_000 });

async function diffOf(p: Plugin, id: string): Promise<Map<string, string>> {
  const r = await post(p.sock, '/GraphDriver.Diff', JSON.stringify({ ID: id }));
  if (r.status !== 200) throw new Error(`Diff: ${r.body.toString()}`);
  const { Readable: R } = await import('node:stream');
  const members = await readTar(R.from([r.body]) as Readable);
  return new Map(members.map((m) => [m.header.name.replace(/\/$/, ''), m.data.toString('latin1')]));
}

async function changesOf(p: Plugin, id: string): Promise<string[]> {
  const r = await call(p.sock, 'Changes', { ID: id });
  if (r.status !== 200) throw new Error(`Changes: ${JSON.stringify(r.reply)}`);
  return (r.reply.Changes as { Path: string; Kind: number }[]).map((c) => `${'CAD'[c.Kind]} ${c.Path}`);
}

const dir = (name: string): Member => ({ name, type: 'directory', mode: 0o755 });
const file = (name: string, data: string): Member => ({ name, data });
const link = (name: string, target: string): Member => ({ name, type: 'symlink', linkname: target });

/** Each case: the image layers (bottom first), the rename the container does, and what `c` must hold. */
const CASES: { what: string; layers: (host: string) => Member[][]; mv: [string, string]; holds: Record<string, string> }[] = [
  {
    what: 'a lower symlink to the host under an upper-layer directory',
    layers: (host) => [[link('a', host)], [dir('a/'), dir('a/b/'), file('a/b/real.txt', REAL)]],
    mv: ['a/b', 'c'],
    holds: { 'c/real.txt': REAL },
  },
  {
    what: 'the symlink at depth 2',
    layers: (host) => [[dir('x/'), link('x/a', host)], [dir('x/'), dir('x/a/'), dir('x/a/b/'), file('x/a/b/real.txt', REAL)]],
    mv: ['x/a/b', 'c'],
    holds: { 'c/real.txt': REAL },
  },
  {
    // the merge of `a` stops at the symlink (a non-directory): the bottom layer's a/b is
    // not part of the merged view either, on kernel overlayfs as through the mount
    what: 'the symlink in the layer right below the top one, a directory under it',
    layers: (host) => [
      [dir('a/'), dir('a/b/'), file('a/b/low.txt', 'hidden by the symlink\n')],
      [link('a', host)],
      [dir('a/'), dir('a/b/'), file('a/b/real.txt', REAL)],
    ],
    mv: ['a/b', 'c'],
    holds: { 'c/real.txt': REAL },
  },
  {
    what: 'an opaque directory over the symlink',
    layers: (host) => [[link('a', host)], [dir('a/'), file('a/.wh..wh..opq', ''), dir('a/b/'), file('a/b/real.txt', REAL)]],
    mv: ['a/b', 'c'],
    holds: { 'c/real.txt': REAL },
  },
];

for (const c of CASES) {
  t.test(`Diff, Changes and DiffSize after a rename: ${c.what}`, async (t) => {
    const p = await plugin(t);
    const mnt = await image(t, p, c.layers(p.host));
    await sh(`mv ${mnt}/${c.mv[0]} ${mnt}/${c.mv[1]}`);
    const shown = fs.readdirSync(path.join(mnt, c.mv[1])).sort();
    t.same(shown, Object.keys(c.holds).map((n) => path.basename(n)).sort(), 'the mount shows the real contents');

    const diff = await diffOf(p, 'c');
    for (const [name, data] of diff) {
      t.notOk(data.includes(SECRET), `Diff member ${name} carries no host data`);
      t.notOk(name.includes('secret'), `Diff has no host name (${name})`);
    }
    for (const [name, data] of Object.entries(c.holds)) t.equal(diff.get(name), data, `Diff holds ${name}`);
    const under = [...diff.keys()].filter((n) => n.startsWith(`${c.mv[1]}/`) && !n.endsWith('/.wh..wh..opq')).sort();
    t.same(under, Object.keys(c.holds).sort(), 'Diff holds nothing else in the renamed dir');

    const changes = await changesOf(p, 'c');
    t.notOk(changes.some((l) => l.includes('secret')), `Changes list no host file: ${changes.join(', ')}`);
    t.same(changes.filter((l) => l.startsWith(`A /${c.mv[1]}/`)).sort(), Object.keys(c.holds).map((n) => `A /${n}`).sort(),
      'Changes add the real contents of the renamed dir, and nothing else');
    t.ok(changes.includes(`D /${c.mv[0]}`), 'Changes delete the old name');

    const size = (await call(p.sock, 'DiffSize', { ID: 'c' })).reply.Size;
    t.equal(size, Object.values(c.holds).reduce((n, d) => n + Buffer.byteLength(d), 0), 'DiffSize counts what Diff exports');

    // mounted again: the redirect is now followed by a fresh lookup, by the same rules
    await call(p.sock, 'Put', { ID: 'c' });
    await call(p.sock, 'Get', { ID: 'c' });
    t.same(fs.readdirSync(path.join(mnt, c.mv[1])).sort(), shown, 'the mount shows the same after a remount');
  });
}

t.test('a name that is not UTF-8, made in the container, is listed byte exact', async (t) => {
  const p = await plugin(t);
  const mnt = await image(t, p, [[dir('etc/'), file('etc/motd', 'hi\n')]]);
  await sh(`printf x > "${mnt}/$(printf 'caf\\351')"`);
  const r = await post(p.sock, '/GraphDriver.Changes', JSON.stringify({ ID: 'c' }));
  t.equal(r.status, 200);
  // the JSON carries the name's bytes as they are (dockerd's Go decoder takes a string's
  // bytes; a UTF-8 rewrite would name another file)
  t.ok(r.body.includes(Buffer.from('"Path":"/caf\xe9"', 'latin1')), `the reply holds /caf\\xe9 byte exact: ${r.body.toString('latin1')}`);
  const diff = await post(p.sock, '/GraphDriver.Diff', JSON.stringify({ ID: 'c' }));
  t.ok(diff.body.includes(Buffer.from(' path=caf\xe9\n', 'latin1')), 'Diff holds it byte exact (a PAX path record)');
});

t.test('Changes list the ancestors of a change as modified, parents first', async (t) => {
  const p = await plugin(t);
  const mnt = await image(t, p, [[dir('usr/'), dir('usr/share/'), file('usr/share/old', 'o\n'), dir('etc/')]]);
  await sh(`echo new > ${mnt}/usr/share/x && rm ${mnt}/usr/share/old`);
  t.same(await changesOf(p, 'c'), ['C /usr', 'C /usr/share', 'D /usr/share/old', 'A /usr/share/x']);
});

t.test('a long Changes walk does not stop the mounts the plugin serves', async (t) => {
  const p = await plugin(t);
  const mnt = await image(t, p, [[dir('etc/'), file('etc/motd', 'hi\n'), file('etc/fresh', 'f\n')]]);
  // a second container layer with 60,000 entries written straight into its diff dir
  await call(p.sock, 'CreateReadWrite', { ID: 'big', Parent: 'l1' });
  await runOk('python3', ['-c', `
import os, sys
d = sys.argv[1]
for i in range(300):
    sub = os.path.join(d, 'd%03d' % i)
    os.mkdir(sub)
    for j in range(200):
        open(os.path.join(sub, 'f%03d' % j), 'w').close()
`, path.join(p.home, 'big', 'diff')], { timeoutMs: 120_000 });
  const order: string[] = [];
  const walk = call(p.sock, 'Changes', { ID: 'big' }).then((r) => {
    order.push('changes');
    return r;
  });
  // a name the kernel has not looked up yet: the plugin itself must answer it
  const lookup = fs.promises.stat(path.join(mnt, 'etc', 'fresh')).then(() => order.push('lookup'));
  const [r] = await Promise.all([walk, lookup]);
  t.equal((r.reply.Changes as unknown[]).length, 60_300, 'the walk listed every entry');
  t.same(order, ['lookup', 'changes'], 'the served lookup was answered while Changes ran');
});
