/**
 * The plugin's route table over a real unix socket, without mounting anything:
 * activation, capabilities, bad requests answered with {"Err"}, layers created,
 * imported, listed as changes and removed.
 */
import t from 'tap';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { startPlugin } from '../../../src/graphdriver/plugin';
import { tempDir, type Teardown } from '../../lib/tmp';
import { waitFor } from '../../lib/proc';
import { makeTar } from './tarlib';
import { call, post } from './pluginlib';

async function plugin(t: Teardown): Promise<{ sock: string; home: string; base: string }> {
  const base = await tempDir(t, 'gdroutes');
  const sock = path.join(base, 'plugin.sock');
  const home = path.join(base, 'home');
  const p = await startPlugin({ socket: sock });
  t.teardown(() => p.stop());
  return { sock, home, base };
}

t.test('activation, init, capabilities, status', async (t) => {
  const { sock, home } = await plugin(t);
  const act = await post(sock, '/Plugin.Activate');
  t.same(act.json(), { Implements: ['GraphDriver'] });
  t.match((await call(sock, 'Status')).reply, { Err: /not initialised/ }, 'nothing before Init');
  t.same(await call(sock, 'Init', { Home: home, Opts: [], UIDMaps: null, GIDMaps: null }), { status: 200, reply: {} });
  t.ok(fs.statSync(home).isDirectory(), 'Init made the home');
  t.same((await call(sock, 'Capabilities')).reply, { Capabilities: { ReproducesExactDiffs: false } }, 'nested capabilities');
  const status = (await call(sock, 'Status')).reply.Status as [string, string][];
  t.same(status.find(([k]) => k === 'Layers'), ['Layers', '0']);
});

t.test('bad requests get {"Err"} and change nothing', async (t) => {
  const { sock, home } = await plugin(t);
  await call(sock, 'Init', { Home: home });
  const before = fs.readdirSync(home).sort();
  const malformed = await post(sock, '/GraphDriver.Create', '{"ID": "x",');
  t.equal(malformed.status, 400);
  t.match(malformed.json(), { Err: /malformed JSON/ });
  t.match((await call(sock, 'Get', { ID: 'nope' })).reply, { Err: /layer nope does not exist/ }, 'unknown ID');
  t.match((await call(sock, 'Create', { ID: 'l1', Parent: 'missing' })).reply, { Err: /parent layer missing of l1 does not exist/ });
  t.match((await call(sock, 'Create', { ID: '../escape' })).reply, { Err: /invalid layer ID/ }, 'path in an ID');
  t.match((await call(sock, 'Create', {})).reply, { Err: /field ID is missing/ });
  t.match((await call(sock, 'Create', { ID: 7 })).reply, { Err: /ID must be a string/ });
  t.match((await post(sock, '/GraphDriver.Nope', '{}')).json(), { Err: /unknown endpoint/ });
  t.match((await post(sock, '/GraphDriver.ApplyDiff?id=ghost', Buffer.alloc(1024))).json(), { Err: /ghost does not exist/ });
  t.match((await post(sock, '/GraphDriver.Diff', JSON.stringify({ ID: 'ghost' }))).json(), { Err: /ghost does not exist/ });
  t.same(fs.readdirSync(home).sort(), before, 'the store is as it was');
  await call(sock, 'Create', { ID: 'victim' });
  const outside = path.join(path.dirname(home), 'outside');
  fs.mkdirSync(outside);
  const hostile = await makeTar([
    { name: 'ok', data: 'fine' },
    { name: 'link', type: 'symlink', linkname: outside },
    { name: 'link/planted', data: 'x' },
  ]);
  const r = await post(sock, '/GraphDriver.ApplyDiff?id=victim', hostile);
  t.equal(r.status, 500);
  t.match(r.json(), { Err: /leaves the layer/ }, 'a tar writing through an outward symlink is refused');
  t.same(fs.readdirSync(outside), [], 'nothing written outside the home');
  await call(sock, 'Remove', { ID: 'victim' });
  t.notOk(fs.existsSync(path.join(path.dirname(home), 'escape')), 'no dir outside the home');
  t.same((await call(sock, 'Exists', { ID: 'l1' })).reply, { Exists: false });
});

t.test('layers: create, apply, changes, size, diff, remove', async (t) => {
  const { sock, home } = await plugin(t);
  await call(sock, 'Init', { Home: home });
  t.same((await call(sock, 'Create', { ID: 'base' })).reply, {});
  t.match((await call(sock, 'Create', { ID: 'base' })).reply, { Err: /already exists/ });
  const baseTar = await makeTar([
    { name: 'etc/', type: 'directory', mode: 0o755 },
    { name: 'etc/motd', data: 'hello\n' },
    { name: 'etc/issue', data: 'issue\n' },
    { name: 'usr/', type: 'directory', mode: 0o755 },
    { name: 'usr/lib/', type: 'directory', mode: 0o755 },
    { name: 'usr/lib/a', data: 'a' },
  ]);
  t.same((await post(sock, '/GraphDriver.ApplyDiff?id=base&parent=', baseTar)).json(), { Size: 13 });
  t.same((await call(sock, 'DiffSize', { ID: 'base' })).reply, { Size: 13 });
  await call(sock, 'CreateReadWrite', { ID: 'top', Parent: 'base', MountLabel: '', StorageOpt: {} });
  t.same((await call(sock, 'Exists', { ID: 'top' })).reply, { Exists: true });
  const topTar = await makeTar([
    { name: 'etc/', type: 'directory', mode: 0o700 },
    { name: 'etc/.wh.issue', data: '' },
    { name: 'etc/motd', data: 'changed\n' },
    { name: 'usr/', type: 'directory', mode: 0o755 },
    { name: 'usr/lib/', type: 'directory', mode: 0o755 },
    { name: 'usr/lib/.wh..wh..opq', data: '' },
    { name: 'usr/lib/b', data: 'b' },
    { name: 'new', data: 'n' },
  ]);
  await post(sock, '/GraphDriver.ApplyDiff?id=top&parent=base', topTar);
  const changes = (await call(sock, 'Changes', { ID: 'top', Parent: 'base' })).reply.Changes as { Path: string; Kind: number }[];
  const seen = changes.map((c) => `${c.Kind} ${c.Path}`).sort();
  // /usr itself is unchanged: listed as the ancestor of a change, as Docker's naive diff does
  t.same(seen, ['0 /etc', '0 /etc/motd', '0 /usr', '0 /usr/lib', '1 /new', '1 /usr/lib/b', '2 /etc/issue', '2 /usr/lib/a'],
    'kinds: 0 modify, 1 add, 2 delete');
  t.same((await call(sock, 'DiffSize', { ID: 'top' })).reply, { Size: 'changed\n'.length + 1 + 1 }, 'DiffSize: the files added or modified');
  const meta = (await call(sock, 'GetMetadata', { ID: 'top' })).reply.Metadata as Record<string, string>;
  t.equal(meta.LowerDir, path.join(home, 'base', 'diff'));
  t.equal(meta.UpperDir, path.join(home, 'top', 'diff'));
  const diff = await post(sock, '/GraphDriver.Diff', JSON.stringify({ ID: 'top', Parent: 'base' }));
  t.equal(diff.status, 200);
  t.ok(diff.body.includes('etc/.wh.issue'), 'Diff is a tar with the whiteout in .wh. form');
  t.same((await call(sock, 'Remove', { ID: 'top' })).reply, {});
  t.notOk(fs.existsSync(path.join(home, 'top')), 'layer dir gone');
  t.same((await call(sock, 'Remove', { ID: 'top' })).reply, {}, 'removing a missing layer is not an error');
});

t.test('a Diff whose reader goes away stops without an uncaught error and lets go of every fd it took', async (t) => {
  const { sock, home } = await plugin(t);
  await call(sock, 'Init', { Home: home });
  await call(sock, 'Create', { ID: 'base' });
  await post(sock, '/GraphDriver.ApplyDiff?id=base', await makeTar([{ name: 'etc/', type: 'directory', mode: 0o755 }]));
  await call(sock, 'CreateReadWrite', { ID: 'big', Parent: 'base' });
  // 64 MiB (sparse) of file data: far more than the socket and the streams buffer
  const diffDir = path.join(home, 'big', 'diff');
  for (let i = 0; i < 4; i++) {
    const f = path.join(diffDir, `f${i}`);
    fs.writeFileSync(f, '');
    fs.truncateSync(f, 16 << 20);
  }
  const fds = (): number => fs.readdirSync('/proc/self/fd').length;
  const before = fds();
  await new Promise<void>((resolve, reject) => {
    const req = http.request({ socketPath: sock, path: '/GraphDriver.Diff', method: 'POST' }, (res) => {
      res.once('data', () => {
        req.destroy();
        resolve();
      });
    });
    req.on('error', (e) => (e.message.includes('socket hang up') || e.message.includes('aborted') ? resolve() : reject(e)));
    req.end(JSON.stringify({ ID: 'big' }));
  });
  t.ok(await waitFor(() => fds() <= before, 10_000), `open fds back to ${before} (now ${fds()})`);
  t.same((await call(sock, 'Exists', { ID: 'big' })).reply, { Exists: true }, 'the plugin still answers');
});
