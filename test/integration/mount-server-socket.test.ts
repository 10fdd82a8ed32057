/**
 * `stratafs daemon --socket PATH` and `stratafs -o server=PATH,...`: several mounts
 * served by one daemon process, listed and unmounted through the socket or with umount,
 * bad requests answered with an error, a missing daemon reported clearly, and SIGTERM
 * unmounting everything.
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { tempDir } from '../lib/tmp';
import { plainExec, run, runOk } from '../lib/proc';
import { mountTable, STRATAFS_BIN } from '../lib/mounts';

const stratafs = (args: string[]): ReturnType<typeof run> => {
  const [cmd, a] = plainExec([STRATAFS_BIN, ...args]);
  return run(cmd, a, { timeoutMs: 30_000 });
};

function rawRequest(sock: string, line: string): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const c = net.connect(sock, () => c.write(line));
    let buf = '';
    c.on('data', (d) => (buf += d));
    c.on('end', () => resolve(JSON.parse(buf) as Record<string, unknown>));
    c.on('error', reject);
  });
}

const rssKiB = (pid: number): number => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);

t.test('one daemon serves the mounts asked for over its socket', async (t) => {
  const base = await tempDir(t, 'gdsocket');
  const sock = path.join(base, 'd.sock');
  const [cmd, args] = plainExec([STRATAFS_BIN, 'daemon', '--socket', sock]);
  const daemon = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  daemon.stderr!.on('data', (d) => (err += d));
  t.teardown(async () => {
    if (daemon.exitCode === null && daemon.signalCode === null) {
      daemon.kill('SIGTERM');
      await new Promise((r) => daemon.once('exit', r));
    }
  });
  for (let i = 0; i < 200 && !err.includes('listening'); i++) await new Promise((r) => setTimeout(r, 50));
  t.match(err, /listening/, 'daemon started');

  const lower = path.join(base, 'lower');
  fs.mkdirSync(lower);
  fs.writeFileSync(path.join(lower, 'f'), 'lower\n');
  const rss0 = rssKiB(daemon.pid!);
  const mnts: string[] = [];
  for (let i = 0; i < 6; i++) {
    const d = path.join(base, `m${i}`);
    for (const s of ['upper', 'work', 'mnt']) fs.mkdirSync(path.join(d, s), { recursive: true });
    const r = await stratafs(['-o', `server=${sock},lowerdir=${lower},upperdir=${d}/upper,workdir=${d}/work`, `${d}/mnt`]);
    t.equal(r.code, 0, `mount ${i} through the daemon ${r.stderr}`);
    mnts.push(`${d}/mnt`);
  }
  t.comment(`daemon RSS ${rss0} KiB with no mount, ${rssKiB(daemon.pid!)} KiB with ${mnts.length}`);
  const table = await mountTable();
  t.ok(mnts.every((m) => table.get(m) === 'fuse.stratafs'), 'all mounted');
  t.equal(await runOk('cat', [`${mnts[0]}/f`]), 'lower\n', 'reads through a daemon mount');
  await runOk('/bin/sh', ['-c', `echo up > ${mnts[1]}/f`]);
  t.equal(fs.readFileSync(path.join(base, 'm1', 'upper', 'f'), 'utf8'), 'up\n', 'writes go to its upper');
  t.equal((await run('pgrep', ['-f', `bin/stratafs(\\.js)? -o server=${sock}`])).stdout.trim(), '', 'no process per mount stays');

  const listed = (await stratafs(['daemon', '--socket', sock, '--list'])).stdout.trim().split('\n').sort();
  t.same(listed, [...mnts].sort(), '--list names every mount');
  await runOk('umount', [mnts[0]]);
  t.equal((await stratafs(['daemon', '--socket', sock, '--unmount', mnts[1]])).code, 0, '--unmount');
  const after = await mountTable();
  t.notOk(after.has(mnts[0]) || after.has(mnts[1]), 'both gone');
  for (let i = 0; i < 100; i++) {
    if ((await stratafs(['daemon', '--socket', sock, '--list'])).stdout.trim().split('\n').length === mnts.length - 2) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  t.equal((await stratafs(['daemon', '--socket', sock, '--list'])).stdout.trim().split('\n').length, mnts.length - 2, 'the daemon forgot them');

  t.match(await rawRequest(sock, '{"op":\n'), { ok: false, error: /malformed JSON/ }, 'malformed request');
  t.match(await rawRequest(sock, '{"op":"mount","spec":{"lowerdirs":["rel"],"mountpoint":"/x"}}\n'), { ok: false, error: /absolute/ });
  const dup = await stratafs(['-o', `server=${sock},lowerdir=${lower}`, mnts[2]]);
  t.equal(dup.code, 1);
  t.match(dup.stderr, /already served/, 'a second mount on a served target is refused');

  daemon.kill('SIGTERM');
  t.equal(await new Promise((r) => daemon.once('exit', r)), 0, 'clean exit on SIGTERM');
  const end = await mountTable();
  t.notOk(mnts.some((m) => end.has(m)), 'SIGTERM unmounted everything');
  t.notOk(fs.existsSync(sock), 'socket removed');
  const gone = await stratafs(['-o', `server=${sock},lowerdir=${lower}`, mnts[2]]);
  t.equal(gone.code, 1);
  t.match(gone.stderr, /no stratafs daemon listens on/, 'a missing daemon is one clear error');
});
