/**
 * The graph-driver plugin killed (SIGKILL) under a running dockerd 20.10 and started
 * again the way the README's systemd unit starts it (`--name`, no `--home`): dockerd
 * sends Init only when it starts itself, so the plugin must find its Home on its own,
 * and `docker rm -f` of the container that ran on the dead plugin, and a new
 * `docker run`, must work.
 *
 * dockerd, its containerd and the plugin run with their own dirs and a unique plugin
 * name, and are stopped by PID in teardown.
 */
import t from 'tap';
import type { ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { tempDir, type Teardown } from '../lib/tmp';
import { plainExec, runOk, spawnListening } from '../lib/proc';
import { mountTable, STRATAFS_BIN } from '../lib/mounts';
import { hasDocker, startDockerd } from '../lib/docker';
import { PLUGIN_DIR } from '../../src/cli/graphdriver';

/** `stratafs graphdriver --name NAME`, as the systemd unit runs it; resolves once it listens. */
async function startPlugin(t: Teardown, name: string): Promise<ChildProcess> {
  const [cmd, args] = plainExec([STRATAFS_BIN, 'graphdriver', '--name', name]);
  return (await spawnListening(t, 'plugin', cmd, args)).child;
}

t.test('a plugin killed under a running dockerd and started as the unit does serves as before',
  { skip: hasDocker() ? false : 'dockerd is not installed' }, async (t) => {
    const base = await tempDir(t, 'gdrestart');
    const name = `stratafs-restart-${process.pid}-${Date.now().toString(36)}`;
    const sock = path.join(PLUGIN_DIR, `${name}.sock`);
    t.teardown(() => {
      // what the plugin keeps next to its socket (its Home, the private bind dir)
      for (const f of [sock, path.join(PLUGIN_DIR, `.${name}.sock.home`), path.join(PLUGIN_DIR, `.${name}.sock.bind`)]) {
        fs.rmSync(f, { recursive: true, force: true });
      }
    });
    const first = await startPlugin(t, name);
    const d = await startDockerd(t, base, name);
    t.equal((await d.dockerOk(['info', '--format', '{{.Driver}}'])).trim(), name, 'dockerd uses the plugin');

    const rootfs = path.join(base, 'rootfs');
    fs.mkdirSync(path.join(rootfs, 'bin'), { recursive: true });
    fs.copyFileSync('/bin/busybox', path.join(rootfs, 'bin', 'busybox'));
    fs.chmodSync(path.join(rootfs, 'bin', 'busybox'), 0o755);
    for (const a of ['sh', 'cat', 'sleep', 'echo']) fs.symlinkSync('busybox', path.join(rootfs, 'bin', a));
    fs.mkdirSync(path.join(rootfs, 'etc'));
    fs.writeFileSync(path.join(rootfs, 'etc', 'motd'), 'from the image\n');
    const tarball = path.join(base, 'rootfs.tar');
    await runOk('tar', ['-C', rootfs, '-cf', tarball, '.']);
    const img = `${name}:base`;
    await d.dockerOk(['import', tarball, img]);
    const cid = (await d.dockerOk(['run', '-d', '--network', 'none', img, '/bin/sleep', '300'])).trim();

    first.kill('SIGKILL');
    await new Promise((r) => first.once('exit', r));
    await startPlugin(t, name);

    const rm = await d.docker(['rm', '-f', cid]);
    t.equal(rm.code, 0, `docker rm -f of the container that ran on the killed plugin ${rm.stderr.trim()}`);
    const ran = await d.docker(['run', '--rm', '--network', 'none', img, '/bin/sh', '-c', 'cat /etc/motd; echo ok > /tmp-file && cat /tmp-file']);
    t.equal(ran.code, 0, `docker run after the restart ${ran.stderr.trim()}`);
    t.equal(ran.stdout, 'from the image\nok\n', 'it reads the image and writes');
    await d.dockerOk(['rmi', img]);
    const home = path.join(d.dataRoot, name);
    const left = [...(await mountTable()).keys()].filter((m) => m.startsWith(`${home}/`));
    t.same(left, [], 'no mounts left, the dead plugin\'s included');
    t.same(fs.readdirSync(home).filter((n) => !n.startsWith('.')), [], 'no layer dirs left');
  });
