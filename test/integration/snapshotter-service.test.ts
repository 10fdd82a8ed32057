// The snapshotter's gRPC service through its unix socket, with a grpc-js client: every
// call, the status codes containerd tells apart, labels, list filters and batching,
// Cleanup, the socket's privacy, and a restart on the same root. (containerd and Docker
// themselves drive it in snapshotter-containerd.test.ts.)
import t, { type Test } from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { startSnapshotter, type RunningSnapshotter } from '../../src/snapshotter/server';
import { snapshotsService } from '../../src/snapshotter/service';
import { tempDir } from '../lib/tmp';
import { run } from '../lib/proc';

type Req = Record<string, unknown>;
type Client = grpc.Client & Record<string, (req: Req, cb: (e: grpc.ServiceError | null, r: Req) => void) => void> & {
  List(req: Req): grpc.ClientReadableStream<Req>;
};

const Ctor = grpc.makeGenericClientConstructor(snapshotsService(), 'Snapshots');

function call(c: Client, method: string, req: Req): Promise<Req> {
  return new Promise((resolve, reject) => c[method](req, (e, r) => (e ? reject(e) : resolve(r))));
}

async function code(p: Promise<unknown>): Promise<grpc.status | 'ok'> {
  try {
    await p;
    return 'ok';
  } catch (e) {
    return (e as grpc.ServiceError).code;
  }
}

function list(c: Client, filters: string[] = []): Promise<{ messages: number; infos: Req[] }> {
  return new Promise((resolve, reject) => {
    const infos: Req[] = [];
    let messages = 0;
    const s = c.List({ filters });
    s.on('data', (m: { info: Req[] }) => {
      messages++;
      infos.push(...m.info);
    });
    s.on('error', reject);
    s.on('end', () => resolve({ messages, infos }));
  });
}

async function start(t: Test, address: string, root: string): Promise<{ srv: RunningSnapshotter; c: Client }> {
  const srv = await startSnapshotter({ address, root });
  const c = new Ctor(`unix:${address}`, grpc.credentials.createInsecure()) as unknown as Client;
  t.teardown(async () => {
    c.close();
    await srv.stop();
  });
  return { srv, c };
}

t.test('every call of the Snapshots service, with containerd status codes', async (t) => {
  const dir = await tempDir(t, 'snap-svc');
  const root = path.join(dir, 'root');
  const address = path.join(dir, 'run', 'snap.sock');
  const { c } = await start(t, address, root);

  // a base layer: a plain writable bind of its own directory
  const a = (await call(c, 'Prepare', { key: 'a', labels: { l: 'v' } })).mounts as Req[];
  t.equal(a.length, 1);
  t.equal(a[0].type, 'bind');
  t.same(a[0].options, ['rbind', 'rw']);
  const aFs = a[0].source as string;
  t.ok(aFs.startsWith(`${fs.realpathSync(root)}/snapshots/`), 'inside the root');
  fs.writeFileSync(path.join(aFs, 'hello'), 'x'.repeat(10000));
  await call(c, 'Commit', { name: 'A', key: 'a', labels: { committed: 'yes' } });
  const statA = (await call(c, 'Stat', { key: 'A' })).info as Req;
  t.equal(statA.kind, 'COMMITTED');
  t.equal(statA.parent, '');
  t.same(statA.labels, { committed: 'yes' });
  t.equal(await code(call(c, 'Stat', { key: 'a' })), grpc.status.NOT_FOUND, 'the active key is gone after Commit');
  const usageA = await call(c, 'Usage', { key: 'A' });
  t.equal(usageA.inodes, 2, 'the dir and one file');
  t.ok((usageA.size as number) >= 10000, `size counts blocks (${String(usageA.size)})`);

  // an active snapshot on a parent: a fuse3.stratafs mount made through mount.fuse3
  const b = (await call(c, 'Prepare', { key: 'b', parent: 'A' })).mounts as Req[];
  t.equal(b[0].type, 'fuse3.stratafs');
  const bOpts = b[0].options as string[];
  t.equal(bOpts[0], `lowerdir=${aFs}`);
  t.match(bOpts[1], /^upperdir=.*\/fs$/);
  t.match(bOpts[2], /^workdir=.*\/work$/);
  t.same((await call(c, 'Mounts', { key: 'b' })).mounts, b, 'Mounts repeats what Prepare said');
  // a view of a one-layer parent: a read-only bind of that layer
  const v = (await call(c, 'View', { key: 'v', parent: 'A' })).mounts as Req[];
  t.same(v, [{ type: 'bind', source: aFs, target: '', options: ['rbind', 'ro'] }]);
  await call(c, 'Commit', { name: 'B', key: 'b' });
  // a view of two layers: a read-only stratafs mount
  const v2 = (await call(c, 'View', { key: 'v2', parent: 'B' })).mounts as Req[];
  t.equal(v2[0].type, 'fuse3.stratafs');
  t.equal((v2[0].options as string[]).length, 2);
  t.match((v2[0].options as string[])[0], new RegExp(`^lowerdir=.*/fs:${aFs}$`));
  t.equal((v2[0].options as string[])[1], 'ro');
  t.equal((await call(c, 'Stat', { key: 'v2' })).info && ((await call(c, 'Stat', { key: 'v2' })).info as Req).kind, 'VIEW');

  // the errors containerd tells apart
  t.equal(await code(call(c, 'Prepare', { key: 'x', parent: 'missing' })), grpc.status.NOT_FOUND);
  t.equal(await code(call(c, 'Prepare', { key: 'v', parent: 'A' })), grpc.status.ALREADY_EXISTS);
  t.equal(await code(call(c, 'Prepare', { key: 'x', parent: 'v' })), grpc.status.INVALID_ARGUMENT, 'parent not committed');
  t.equal(await code(call(c, 'Prepare', { key: '' })), grpc.status.INVALID_ARGUMENT);
  t.equal(await code(call(c, 'Prepare', { key: 'big', labels: { k: 'v'.repeat(5000) } })), grpc.status.INVALID_ARGUMENT);
  t.equal(await code(call(c, 'Remove', { key: 'A' })), grpc.status.FAILED_PRECONDITION, 'a parent is not removed');
  t.equal(await code(call(c, 'Mounts', { key: 'A' })), grpc.status.FAILED_PRECONDITION, 'committed: no mounts');
  t.equal(await code(call(c, 'Commit', { name: 'X', key: 'A' })), grpc.status.FAILED_PRECONDITION, 'committed again');
  t.equal(await code(call(c, 'Commit', { name: 'X', key: 'v' })), grpc.status.FAILED_PRECONDITION, 'a view is not committed');
  await call(c, 'Prepare', { key: 'c', parent: 'B' });
  t.equal(await code(call(c, 'Commit', { name: 'A', key: 'c' })), grpc.status.ALREADY_EXISTS);
  t.equal(await code(call(c, 'Stat', { key: 'nope' })), grpc.status.NOT_FOUND);
  t.equal(await code(call(c, 'Usage', { key: 'nope' })), grpc.status.NOT_FOUND);
  t.equal(await code(call(c, 'Remove', { key: 'nope' })), grpc.status.NOT_FOUND);
  t.equal(await code(call(c, 'Stat', { key: 'c' })), 'ok', 'a refused commit leaves the active snapshot');

  // labels: the whole set, one label, one removed; only labels are mutable
  await call(c, 'Update', { info: { name: 'c', labels: { x: '1', y: '2' } } });
  let info = (await call(c, 'Update', { info: { name: 'c', labels: { x: '3', y: 'ignored' } }, update_mask: { paths: ['labels.x'] } })).info as Req;
  t.same(info.labels, { x: '3', y: '2' });
  info = (await call(c, 'Update', { info: { name: 'c', labels: {} }, update_mask: { paths: ['labels.y'] } })).info as Req;
  t.same(info.labels, { x: '3' });
  t.equal(await code(call(c, 'Update', { info: { name: 'c', parent: 'A' }, update_mask: { paths: ['parent'] } })), grpc.status.INVALID_ARGUMENT);
  t.equal(await code(call(c, 'Update', { info: { name: 'nope' } })), grpc.status.NOT_FOUND);
  const updated = (await call(c, 'Stat', { key: 'c' })).info as { created_at: Req; updated_at: Req };
  t.ok(Number(updated.updated_at.seconds) * 1e9 + Number(updated.updated_at.nanos) > Number(updated.created_at.seconds) * 1e9 + Number(updated.created_at.nanos), 'updated_at moves');

  // usage of an active snapshot: its own files only
  const cUpper = ((await call(c, 'Mounts', { key: 'c' })).mounts as Req[])[0].options as string[];
  const cFs = cUpper[1].slice('upperdir='.length);
  t.equal((await call(c, 'Usage', { key: 'c' })).inodes, 1, 'an empty upper: its dir');
  fs.writeFileSync(path.join(cFs, 'f'), 'y');
  t.equal((await call(c, 'Usage', { key: 'c' })).inodes, 2);

  // List: filters (any of them), and many snapshots in several messages
  const names = async (filters: string[]): Promise<string[]> => (await list(c, filters)).infos.map((i) => i.name as string).sort();
  t.same(await names([]), ['A', 'B', 'c', 'v', 'v2']);
  t.same(await names(['kind==committed']), ['A', 'B']);
  t.same(await names(['parent==A']), ['B', 'v']);
  t.same(await names(['parent==A,kind==view', 'name==c']), ['c', 'v']);
  t.same(await names(['labels.x']), ['c']);
  t.same(await names(['labels."committed"==yes']), ['A']);
  t.same(await names(['name~=^v']), ['v', 'v2']);
  t.equal(await code(list(c, ['bogus==1'])), grpc.status.INVALID_ARGUMENT);
  for (let i = 0; i < 150; i++) await call(c, 'View', { key: `many-${i}`, parent: 'B' });
  const all = await list(c);
  t.equal(all.infos.length, 155);
  t.ok(all.messages >= 2, `sent in batches (${all.messages} messages)`);
  for (let i = 0; i < 150; i++) await call(c, 'Remove', { key: `many-${i}` });

  // Remove and Cleanup: directories no snapshot owns go, owned ones stay
  const snaps = path.join(fs.realpathSync(root), 'snapshots');
  const before = fs.readdirSync(snaps).sort();
  fs.mkdirSync(path.join(snaps, '99999', 'fs'), { recursive: true });
  fs.mkdirSync(path.join(snaps, '.new-left'));
  fs.mkdirSync(path.join(snaps, '.rm-left'));
  await call(c, 'Cleanup', {});
  t.same(fs.readdirSync(snaps).sort(), before, 'only orphans removed');
  await call(c, 'Remove', { key: 'v' });
  t.equal(fs.readdirSync(snaps).length, before.length - 1, 'Remove deletes the directory');
});

t.test('the socket: private from the start, stale one replaced, live one refused', async (t) => {
  const dir = await tempDir(t, 'snap-sock');
  const address = path.join(dir, 'snap.sock');
  const root = path.join(dir, 'root');
  await start(t, address, root);
  const st = fs.lstatSync(address);
  t.ok(st.isSocket());
  t.equal(st.mode & 0o777, 0o600);
  t.equal(st.uid, 0);
  const bindDirs = fs.readdirSync(dir).filter((n) => n.startsWith('.snap.sock.bind'));
  t.equal(bindDirs.length, 1, 'bound inside a private directory');
  t.equal(fs.statSync(path.join(dir, bindDirs[0])).mode & 0o777, 0o700);
  // another user cannot connect
  fs.chmodSync(dir, 0o755);
  const probe = `require('net').connect(${JSON.stringify(address)}).on('connect',()=>{console.log('connected');process.exit(0)}).on('error',(e)=>{console.log(e.code);process.exit(0)})`;
  const r = await run('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'env', '-u', 'NODE_OPTIONS', process.execPath, '-e', probe], { timeoutMs: 30_000 });
  t.equal(r.stdout.trim(), 'EACCES', 'nobody is refused by the socket mode');
  // even with the mode opened up, another user's connection is closed unanswered (SO_PEERCRED)
  fs.chmodSync(address, 0o666);
  const probeFor = (ms: number): string => `const g=require(${JSON.stringify(require.resolve('@grpc/grpc-js'))});const c=new g.Client('unix:${address}',g.credentials.createInsecure());` +
    `c.waitForReady(Date.now()+${ms},(e)=>{console.log(e?'refused':'ready');process.exit(0)})`;
  const r2 = await run('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'env', '-u', 'NODE_OPTIONS', process.execPath, '-e', probeFor(3000)], { timeoutMs: 30_000 });
  t.equal(r2.stdout.trim(), 'refused', `another uid gets no gRPC channel (${r2.stderr.trim()})`);
  const rootProbe = await run('env', ['-u', 'NODE_OPTIONS', process.execPath, '-e', probeFor(20_000)], { timeoutMs: 30_000 });
  t.equal(rootProbe.stdout.trim(), 'ready', 'root does (the same probe)');
  fs.chmodSync(address, 0o600);
  await t.rejects(startSnapshotter({ address, root: path.join(dir, 'root2') }), /in use/, 'a live socket is not taken over');
  // a refused root: not absolute, or with characters mount option lists cannot carry
  await t.rejects(startSnapshotter({ address: path.join(dir, 'o.sock'), root: path.join(dir, 'a,b') }), { code: 'STRATAFS_ERR_LAYER' });
  t.notOk(fs.existsSync(path.join(dir, 'o.sock')));
});

t.test('a restarted snapshotter (after SIGKILL) serves every snapshot again', async (t) => {
  const dir = await tempDir(t, 'snap-restart');
  const address = path.join(dir, 'snap.sock');
  const root = path.join(dir, 'root');
  const bin = path.resolve(__dirname, '..', '..', 'bin', 'stratafs');
  const { spawn } = await import('node:child_process');
  const launch = async (): Promise<import('node:child_process').ChildProcess> => {
    const p = spawn('env', ['-u', 'NODE_OPTIONS', bin, 'snapshotter', '--address', address, '--root', root], { stdio: ['ignore', 'ignore', 'pipe'] });
    t.teardown(() => {
      if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    });
    await new Promise<void>((resolve, reject) => {
      let err = '';
      p.stderr!.on('data', (d: Buffer) => {
        err += d.toString();
        if (err.includes('listening on')) resolve();
      });
      p.once('exit', () => reject(new Error(`snapshotter exited: ${err}`)));
    });
    return p;
  };
  let p = await launch();
  let c = new Ctor(`unix:${address}`, grpc.credentials.createInsecure()) as unknown as Client;
  await call(c, 'Prepare', { key: 'base' });
  await call(c, 'Commit', { name: 'BASE', key: 'base' });
  const before = await call(c, 'Prepare', { key: 'ctr', parent: 'BASE', labels: { who: 'me' } });
  c.close();
  p.kill('SIGKILL');
  await new Promise((r) => p.once('exit', r));
  t.ok(fs.existsSync(address), 'a killed snapshotter leaves its socket');
  p = await launch();
  c = new Ctor(`unix:${address}`, grpc.credentials.createInsecure()) as unknown as Client;
  t.same(await call(c, 'Mounts', { key: 'ctr' }), before, 'same mounts after the restart');
  t.same(((await call(c, 'Stat', { key: 'ctr' })).info as Req).labels, { who: 'me' });
  await call(c, 'Remove', { key: 'ctr' });
  await call(c, 'Remove', { key: 'BASE' });
  t.same((await list(c)).infos, []);
  c.close();
  p.kill('SIGTERM');
  const [exitCode] = await new Promise<[number | null]>((r) => p.once('exit', (code) => r([code])));
  t.equal(exitCode, 0, 'SIGTERM: a clean exit');
  t.notOk(fs.existsSync(address), 'SIGTERM removes the socket');
});
