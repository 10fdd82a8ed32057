// podman with stratafs as mount_program and `mountopt = "server=SOCK"` in storage.conf:
// containers-storage passes mountopt inside -o to the mount program, bin/stratafs hands
// the mount to a running `stratafs daemon --socket SOCK` through its C client, and no
// Node.js process starts per container (STRATAFS_NODE points nowhere: a launcher that
// tried would fail). The daemon is stopped by its PID and nothing stays mounted.
import t from 'tap';
import { spawn } from 'node:child_process';
import { appendFile } from 'node:fs/promises';
import { join } from 'node:path';
import { containerStore } from '../../lib/containers';
import { STRATAFS_BIN } from '../../lib/mounts';
import { plainExec, run } from '../../lib/proc';
import { busyboxRootfs, tarDir } from '../../lib/rootfs';

const IMAGE = 'localhost/stratafs-test/busybox-srv:1';
const RUN = ['run', '--network', 'none', '--pull', 'never'];
const SCRIPT = 'echo new > /tmp/x; rm /etc/issue; mkdir -p /n/d; cat /tmp/x; ls /n; test -e /etc/issue || echo gone; grep " / " /proc/mounts | cut -d" " -f3';

t.test('podman through a running stratafs daemon (mountopt server=)', async (t) => {
  const store = await containerStore(t, { prefix: 'podsrv' });
  const sock = join(store.dir, 'd.sock');
  // [storage.options.overlay] is the last table of the store's storage.conf
  await appendFile(store.env.CONTAINERS_STORAGE_CONF!, `mountopt = ${JSON.stringify(`server=${sock}`)}\n`);

  const [cmd, args] = plainExec([STRATAFS_BIN, 'daemon', '--socket', sock, '-d']);
  const daemon = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  daemon.stderr!.on('data', (d) => (log += d));
  const exited = new Promise<number | null>((r) => daemon.once('exit', (code) => r(code)));
  // after the store's containers are gone (they are the daemon's mounts), stop the daemon
  t.teardown(async () => {
    await store.clean();
    if (daemon.exitCode === null && daemon.signalCode === null) daemon.kill('SIGTERM');
    await exited;
  });
  for (let i = 0; i < 200 && !log.includes('listening'); i++) await new Promise((r) => setTimeout(r, 50));
  t.match(log, /listening/, 'the daemon is up');

  const rootfs = await busyboxRootfs(join(store.dir, 'rootfs'));
  await store.podmanOk(['import', '--quiet', await tarDir(rootfs, join(store.dir, 'rootfs.tar')), IMAGE]);
  const noNode = { STRATAFS_NODE: join(store.dir, 'no-node') };

  const out = await store.podmanOk([...RUN, '--rm', IMAGE, '/bin/sh', '-c', SCRIPT], { env: noNode });
  t.equal(out, 'new\nd\ngone\nfuse.stratafs\n', 'the container runs on a stratafs root served by the daemon');
  t.match(log, /stratafs:server mounted \S+\/merged/, 'the daemon mounted the container root');
  t.same(await store.mounts(), [], 'run --rm leaves no mount');

  // podman mount: the container root stays mounted, listed by the daemon
  const ctr = (await store.podmanOk(['create', '--network', 'none', '--pull', 'never', IMAGE, 'true'], { env: noNode })).trim();
  const merged = (await store.podmanOk(['mount', ctr], { env: noNode })).trim();
  const listed = await run(...plainExec([STRATAFS_BIN, 'daemon', '--socket', sock, '--list']), { timeoutMs: 30_000 });
  t.equal(listed.stdout.trim(), merged, `the daemon serves ${merged}`);
  t.equal((await run('cat', [join(merged, 'etc', 'passwd')])).code, 0, 'files readable through it');
  await store.podmanOk(['umount', ctr]);
  await store.podmanOk(['rm', ctr]);
  t.same(await store.mounts(), [], 'podman umount unmounted it');

  await store.clean();
  daemon.kill('SIGTERM');
  t.equal(await exited, 0, 'the daemon exits cleanly');
  t.same(await store.mounts(), [], 'nothing stays mounted');
});
