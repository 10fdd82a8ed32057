/**
 * The graph-driver plugin as dockerd sees it, with real mounts: Get/Put nest, Remove of
 * a mounted layer unmounts it, every layer of the store is served by the one plugin
 * process, and a plugin killed and started again finds its layers and mounts them on
 * demand. The plugin runs as its own process (bin/stratafs graphdriver); the test reads
 * the mounts only through child processes.
 */
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { tempDir, type Teardown } from '../lib/tmp';
import { run, runOk } from '../lib/proc';
import { mountTable } from '../lib/mounts';
import { makeTar } from '../unit/graphdriver/tarlib';
import { call, post, startPlugin } from '../unit/graphdriver/pluginlib';

const cat = (file: string): Promise<string> => runOk('cat', [file], { timeoutMs: 20_000 });

async function setup(t: Teardown): Promise<{ base: string; sock: string; home: string }> {
  const base = await tempDir(t, 'gdplugin');
  return { base, sock: path.join(base, 'p.sock'), home: path.join(base, 'home') };
}

async function layers(sock: string, home: string): Promise<void> {
  t.same((await call(sock, 'Init', { Home: home })).reply, {});
  await call(sock, 'Create', { ID: 'base' });
  await post(sock, '/GraphDriver.ApplyDiff?id=base', await makeTar([
    { name: 'etc/', type: 'directory', mode: 0o755 },
    { name: 'etc/motd', data: 'base\n' },
  ]));
  await call(sock, 'CreateReadWrite', { ID: 'c-init', Parent: 'base' });
  await call(sock, 'CreateReadWrite', { ID: 'c', Parent: 'c-init' });
}

t.test('Get/Put nest; Remove unmounts; all mounts in one process', async (t) => {
  const { sock, home } = await setup(t);
  const plugin = await startPlugin(t, sock);
  await layers(sock, home);
  const g1 = await call(sock, 'Get', { ID: 'c', MountLabel: '' });
  const dir = path.join(home, 'c', 'merged');
  t.same(g1.reply, { Dir: dir });
  t.equal(await cat(`${dir}/etc/motd`), 'base\n', 'the chain is mounted');
  t.same((await call(sock, 'Get', { ID: 'c' })).reply, { Dir: dir }, 'a nested Get');
  await call(sock, 'Put', { ID: 'c' });
  t.ok((await mountTable()).has(dir), 'still mounted after one of two Puts');
  await runOk('/bin/sh', ['-c', `echo mine > ${dir}/etc/motd && echo new > ${dir}/new`]);
  t.equal(fs.readFileSync(path.join(home, 'c', 'diff', 'etc', 'motd'), 'utf8'), 'mine\n', 'writes land in the layer diff');
  await call(sock, 'Put', { ID: 'c' });
  t.notOk((await mountTable()).has(dir), 'unmounted after the last Put');

  const other = (await call(sock, 'Get', { ID: 'c-init' })).reply.Dir as string;
  await call(sock, 'Get', { ID: 'c' });
  const table = await mountTable();
  t.ok(table.has(other) && table.has(dir), 'two layers mounted');
  const status = (await call(sock, 'Status')).reply.Status as [string, string][];
  t.same(status.find(([k]) => k.startsWith('Mounts')), ['Mounts served by this process', '2'], 'one process serves both');
  const children = (await run('pgrep', ['-P', String(plugin.pid)])).stdout.trim();
  t.equal(children, '', 'no process per mount');

  t.same((await call(sock, 'Remove', { ID: 'c' })).reply, {}, 'Remove of a mounted layer');
  t.notOk((await mountTable()).has(dir), 'it was unmounted');
  t.notOk(fs.existsSync(path.join(home, 'c')), 'and its dir removed');
  await call(sock, 'Cleanup');
  t.notOk((await mountTable()).has(other), 'Cleanup unmounts the rest');
});

t.test('a plugin killed and restarted finds its layers and mounts again', async (t) => {
  const { sock, home } = await setup(t);
  const first = await startPlugin(t, sock);
  await layers(sock, home);
  const dir = (await call(sock, 'Get', { ID: 'c' })).reply.Dir as string;
  await runOk('/bin/sh', ['-c', `echo kept > ${dir}/etc/motd`]);
  first.kill('SIGKILL');
  await new Promise((r) => first.once('exit', r));
  t.teardown(() => run('umount', ['-l', dir]));

  await startPlugin(t, sock);
  t.same((await call(sock, 'Init', { Home: home })).reply, {});
  t.same((await call(sock, 'Exists', { ID: 'c' })).reply, { Exists: true }, 'the layer is still known');
  t.same((await call(sock, 'Get', { ID: 'c' })).reply, { Dir: dir }, 'Get mounts over the stale mount');
  t.equal(await cat(`${dir}/etc/motd`), 'kept\n', 'what was written before the crash is there');
  await call(sock, 'Put', { ID: 'c' });
  t.notOk((await mountTable()).has(dir), 'unmounted');
});

t.test('SIGTERM unmounts every layer and removes the socket', async (t) => {
  const { sock, home } = await setup(t);
  const plugin = await startPlugin(t, sock);
  await layers(sock, home);
  const dir = (await call(sock, 'Get', { ID: 'c' })).reply.Dir as string;
  plugin.kill('SIGTERM');
  const code = await new Promise((r) => plugin.once('exit', r));
  t.equal(code, 0, 'clean exit');
  t.notOk((await mountTable()).has(dir), 'nothing left mounted');
  t.notOk(fs.existsSync(sock), 'socket removed');
});
