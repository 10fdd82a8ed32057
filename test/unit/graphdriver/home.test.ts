/**
 * The plugin's Home over a real unix socket (no mounts): dockerd's Init fixes it (the
 * same Home again is fine, another is refused), Remove deletes only layer dirs the
 * driver created, and a plugin restarted without --home serves the Home of the last
 * Init (dockerd sends Init only when it starts itself).
 */
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { startPlugin, type RunningPlugin } from '../../../src/graphdriver/plugin';
import { tempDir, type Teardown } from '../../lib/tmp';
import { call } from './pluginlib';

async function start(t: Teardown, sock: string, home?: string): Promise<RunningPlugin> {
  const p = await startPlugin({ socket: sock, home });
  t.teardown(() => p.stop());
  return p;
}

const homeOf = async (sock: string): Promise<unknown> =>
  ((await call(sock, 'Status')).reply.Status as [string, string][] | undefined)?.find(([k]) => k === 'Home')?.[1];

t.test('Init once per Home: the same Home again is fine, another is refused', async (t) => {
  const base = await tempDir(t, 'gdhome');
  const sock = path.join(base, 'p.sock');
  const home = path.join(base, 'home');
  const other = path.join(base, 'other');
  await start(t, sock);
  t.same((await call(sock, 'Init', { Home: home })).reply, {}, 'first Init');
  await call(sock, 'Create', { ID: 'l1' });
  t.same((await call(sock, 'Init', { Home: home })).reply, {}, 'Init with the same Home (dockerd restarted)');
  const again = await call(sock, 'Init', { Home: other });
  t.equal(again.status, 500);
  t.match(again.reply, { Err: /serves Home .*another Home .* is refused/ }, 'another Home refused');
  t.notOk(fs.existsSync(other), 'the other Home was not even created');
  t.equal(await homeOf(sock), home, 'still serving the first Home');
  t.same((await call(sock, 'Exists', { ID: 'l1' })).reply, { Exists: true });
});

t.test('a Home opened at start (--home) gives way to the first Init', async (t) => {
  const base = await tempDir(t, 'gdhome');
  const sock = path.join(base, 'p.sock');
  await start(t, sock, path.join(base, 'given'));
  t.same((await call(sock, 'Init', { Home: path.join(base, 'dockerd') })).reply, {});
  t.equal(await homeOf(sock), path.join(base, 'dockerd'));
  t.match((await call(sock, 'Init', { Home: path.join(base, 'given') })).reply, { Err: /refused/ }, 'then it is fixed');
});

t.test('Remove deletes only layer dirs the driver created', async (t) => {
  const base = await tempDir(t, 'gdhome');
  const sock = path.join(base, 'p.sock');
  const home = path.join(base, 'home');
  await start(t, sock);
  await call(sock, 'Init', { Home: home });
  fs.mkdirSync(path.join(home, 'precious'));
  fs.writeFileSync(path.join(home, 'precious', 'data'), 'keep me\n');
  // looks like a layer, was not made by Create
  fs.mkdirSync(path.join(home, 'lookalike', 'diff'), { recursive: true });
  fs.writeFileSync(path.join(home, 'lookalike', 'diff', 'f'), 'keep me too\n');
  for (const id of ['precious', 'lookalike']) {
    const r = await call(sock, 'Remove', { ID: id });
    t.equal(r.status, 500, `Remove ${id} fails`);
    t.match(r.reply, { Err: /is not a layer this driver created/ });
  }
  t.equal(fs.readFileSync(path.join(home, 'precious', 'data'), 'utf8'), 'keep me\n', 'the dir and its file are kept');
  t.equal(fs.readFileSync(path.join(home, 'lookalike', 'diff', 'f'), 'utf8'), 'keep me too\n');
  await call(sock, 'Create', { ID: 'real' });
  t.same((await call(sock, 'Remove', { ID: 'real' })).reply, {}, 'a layer it created is removed');
  t.notOk(fs.existsSync(path.join(home, 'real')));
  t.same((await call(sock, 'Remove', { ID: 'never-was' })).reply, {}, 'Remove of nothing is fine');
});

t.test('a plugin restarted without --home serves the Home of the last Init', async (t) => {
  const base = await tempDir(t, 'gdhome');
  const sock = path.join(base, 'p.sock');
  const home = path.join(base, 'home');
  const first = await startPlugin({ socket: sock });
  await call(sock, 'Init', { Home: home });
  await call(sock, 'Create', { ID: 'l1' });
  await first.stop();

  const second = await start(t, sock);
  t.equal(await homeOf(sock), home, 'no Init needed');
  t.same((await call(sock, 'Exists', { ID: 'l1' })).reply, { Exists: true }, 'the layers are there');
  t.same((await call(sock, 'Create', { ID: 'l2', Parent: 'l1' })).reply, {}, 'and it serves as before');
  t.same((await call(sock, 'Init', { Home: home })).reply, {}, 'a later Init of the same Home is fine');
  await second.stop();

  // a memory anyone could have written is not believed
  const file = path.join(base, '.p.sock.home');
  t.ok(fs.existsSync(file), 'remembered next to the socket');
  fs.chmodSync(file, 0o666);
  await start(t, sock);
  t.match((await call(sock, 'Status')).reply, { Err: /not initialised/ }, 'a world-writable memory is ignored');
});

t.test('a Home from before layer marks: its layers are adopted once, and stay removable', async (t) => {
  const base = await tempDir(t, 'gdhome');
  const sock = path.join(base, 'p.sock');
  const home = path.join(base, 'home');
  // what Create made before marks existed, and a dir that is not a layer
  for (const d of ['diff', 'work', 'merged']) fs.mkdirSync(path.join(home, 'old', d), { recursive: true });
  fs.writeFileSync(path.join(home, 'old', 'diff', 'f'), 'layer data\n');
  fs.mkdirSync(path.join(home, 'precious'));
  fs.writeFileSync(path.join(home, 'precious', 'data'), 'keep me\n');
  await start(t, sock);
  await call(sock, 'Init', { Home: home });
  t.same((await call(sock, 'Exists', { ID: 'old' })).reply, { Exists: true }, 'the old layer is there');
  const kept = await call(sock, 'Remove', { ID: 'precious' });
  t.equal(kept.status, 500, 'a dir without the layer shape is not adopted');
  t.equal(fs.readFileSync(path.join(home, 'precious', 'data'), 'utf8'), 'keep me\n');
  t.same((await call(sock, 'Remove', { ID: 'old' })).reply, {}, 'the old layer is removed');
  t.notOk(fs.existsSync(path.join(home, 'old')));

  // the adoption happens once: a layer-shaped dir that appears afterwards is not a layer
  for (const d of ['diff', 'work']) fs.mkdirSync(path.join(home, 'later', d), { recursive: true });
  const second = await start(t, path.join(base, 'q.sock'), home);
  t.ok(second, 'a second plugin opens the same Home');
  const r = await call(path.join(base, 'q.sock'), 'Remove', { ID: 'later' });
  t.equal(r.status, 500, 'a layer-shaped dir made after the adoption is refused');
  t.ok(fs.existsSync(path.join(home, 'later', 'diff')), 'and kept');
});
