/**
 * A real dockerd 20.10 on the stratafs graph-driver plugin: import a busybox rootfs,
 * run containers that write and delete lower files, docker diff, commit and run the
 * result, save | load and run again (Docker rebuilds the saved layers from the files
 * it reads), then rm / rmi leave no mounts and no layer dirs behind. A binary
 * security.capability xattr goes through import (ApplyDiff), commit (Diff) and
 * save | load byte exact.
 *
 * dockerd, its containerd and the plugin are started here with their own dirs, socket
 * and a unique plugin name, and stopped by PID in teardown.
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { tempDir } from '../lib/tmp';
import { plainExec, runOk } from '../lib/proc';
import { mountTable, STRATAFS_BIN } from '../lib/mounts';
import { hasDocker, startDockerd } from '../lib/docker';
import { native } from '../../src/native';

const BUSYBOX = '/bin/busybox';
const APPLETS = ['sh', 'ls', 'cat', 'echo', 'rm', 'mkdir', 'test', 'md5sum', 'stat', 'ln'];

function buildRootfs(dir: string): void {
  fs.mkdirSync(path.join(dir, 'bin'), { recursive: true });
  fs.copyFileSync(BUSYBOX, path.join(dir, 'bin', 'busybox'));
  fs.chmodSync(path.join(dir, 'bin', 'busybox'), 0o755);
  for (const a of APPLETS) fs.symlinkSync('busybox', path.join(dir, 'bin', a));
  fs.mkdirSync(path.join(dir, 'etc'));
  fs.writeFileSync(path.join(dir, 'etc', 'motd'), 'from the image\n');
  fs.writeFileSync(path.join(dir, 'etc', 'removeme'), 'bye\n');
  fs.mkdirSync(path.join(dir, 'srv', 'tree'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'srv', 'tree', 'leaf'), 'leaf\n');
  fs.mkdirSync(path.join(dir, 'opt', 'app', 'conf'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'opt', 'app', 'conf', 'app.conf'), 'setting=1\n');
  fs.writeFileSync(path.join(dir, 'opt', 'app', 'README'), 'app\n');
  fs.writeFileSync(path.join(dir, 'bin', 'suid'), 'not really a program\n');
  fs.chmodSync(path.join(dir, 'bin', 'suid'), 0o4755);
  fs.linkSync(path.join(dir, 'bin', 'suid'), path.join(dir, 'bin', 'suid-link'));
  fs.mkdirSync(path.join(dir, 'dev'));
  fs.mkdirSync(path.join(dir, 'lib'));
  fs.mkdirSync(path.join(dir, 'tmp'), { mode: 0o1777 });
  fs.chmodSync(path.join(dir, 'tmp'), 0o1777);
}

/** VFS_CAP_REVISION_2 with the effective bit, cap_setuid and cap_net_raw permitted (`setcap cap_setuid,cap_net_raw+ep`), not UTF-8 */
const CAP_HEX = '0100000280200000000000000000000000000000';
const setCap = (file: string): Promise<string> => runOk('setfattr', ['-n', 'security.capability', '-v', `0x${CAP_HEX}`, file]);

/** security.capability (hex) of `rel` in every layer dir under `home` that holds it */
function capsIn(home: string, rel: string): string[] {
  const out: string[] = [];
  for (const id of fs.readdirSync(home).filter((n) => !n.startsWith('.'))) {
    const file = path.join(home, id, 'diff', rel);
    if (!fs.existsSync(file)) continue;
    const v = native.getxattrOrErrno(file, 'security.capability', false);
    out.push(typeof v === 'number' ? `errno ${v}` : v.toString('hex'));
  }
  return out;
}

const md5 = (file: string): string => createHash('md5').update(fs.readFileSync(file)).digest('hex');

t.test('dockerd on the stratafs graph driver', { skip: hasDocker() ? false : 'dockerd is not installed' }, async (t) => {
  const base = await tempDir(t, 'gddocker');
  const name = `stratafs-test-${process.pid}-${Date.now().toString(36)}`;
  const sock = `/run/docker/plugins/${name}.sock`;

  // the plugin, in its own process
  const [cmd, args] = plainExec([STRATAFS_BIN, 'graphdriver', '--name', name]);
  const plugin = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let pluginErr = '';
  plugin.stderr!.on('data', (d) => (pluginErr += d));
  t.teardown(async () => {
    if (plugin.exitCode === null && plugin.signalCode === null) {
      plugin.kill('SIGTERM');
      await new Promise((r) => plugin.once('exit', r));
    }
    fs.rmSync(sock, { force: true });
  });
  for (let i = 0; i < 200 && !fs.existsSync(sock); i++) await new Promise((r) => setTimeout(r, 50));
  t.ok(fs.existsSync(sock), `plugin listens on ${sock}`);

  const d = await startDockerd(t, base, name);
  const info = await d.dockerOk(['info', '--format', '{{.Driver}}']);
  t.equal(info.trim(), name, 'dockerd uses the plugin');
  const home = path.join(d.dataRoot, name);

  const rootfs = path.join(base, 'rootfs');
  buildRootfs(rootfs);
  const tarball = path.join(base, 'rootfs.tar');
  await runOk('mknod', [path.join(rootfs, 'lib', 'special'), 'c', '42', '7']);
  fs.writeFileSync(path.join(rootfs, 'bin', 'capped'), 'capped\n');
  await setCap(path.join(rootfs, 'bin', 'capped'));
  await runOk('tar', ['--format=posix', '--xattrs', '--xattrs-include=*', '-C', rootfs, '-cf', tarball, '.']);
  const img = `${name}:base`;
  await d.dockerOk(['import', tarball, img]);
  t.same(capsIn(home, 'bin/capped'), [CAP_HEX], 'import: binary security.capability exact in the layer');

  const runIn = (image: string, script: string, extra: string[] = []): Promise<string> =>
    d.dockerOk(['run', '--rm', '--network', 'none', ...extra, image, '/bin/sh', '-c', script]);

  t.equal(await runIn(img, 'cat /etc/motd'), 'from the image\n', 'a container reads the imported layer');
  t.equal((await runIn(img, 'md5sum /bin/busybox')).split(' ')[0], md5(BUSYBOX), 'binary contents exact');
  const meta = "stat -c '%n %h %a' /bin/suid /bin/suid-link; stat -c '%n %F %t:%T' /lib/special";
  const metaWanted = '/bin/suid 2 4755\n/bin/suid-link 2 4755\n/lib/special character special file 2a:7\n';
  t.equal(await runIn(img, meta), metaWanted, 'hard link, setuid bit and device node imported');

  const out = await d.dockerOk(['run', '--name', `${name}-c1`, '--network', 'none', img, '/bin/sh', '-c',
    'echo changed > /etc/motd && rm /etc/removeme && rm -r /srv/tree && mkdir /newdir && echo x > /newdir/f && ' +
    'mv /opt/app /opt/renamed && echo 2 > /opt/renamed/conf/new.conf && echo c2 > /bin/capped2 && ' +
    'printf x > "/$(printf \'caf\\351\')" && cat /etc/motd']);
  t.equal(out, 'changed\n', 'writes inside the container');
  const diff = (await d.dockerOk(['diff', `${name}-c1`])).trim().split('\n').sort();
  for (const line of ['C /etc', 'C /etc/motd', 'D /etc/removeme', 'D /srv/tree', 'A /newdir', 'A /newdir/f',
    'D /opt/app', 'A /opt/renamed', 'A /opt/renamed/README', 'A /opt/renamed/conf/app.conf', 'A /opt/renamed/conf/new.conf']) {
    t.ok(diff.includes(line), `docker diff shows "${line}"`);
  }
  t.notOk(diff.some((l) => l.startsWith('D /bin')), `nothing else deleted (${diff.join(', ')})`);
  // a name that is not UTF-8 is listed: the plugin sends its bytes, dockerd's JSON decoding
  // turns the stray byte into U+FFFD (as its API does for names from its own drivers)
  t.ok(diff.includes('A /caf\ufffd'), 'docker diff lists the non-UTF-8 name caf\\xe9');

  // GetMetadata feeds docker inspect; the rename left a redirect that Diff must expand
  const upper = (await d.dockerOk(['inspect', '-f', '{{.GraphDriver.Data.UpperDir}}', `${name}-c1`])).trim();
  t.match(upper, new RegExp(`^${home}/[0-9a-f]{64}/diff$`), 'inspect shows the upper dir');
  const redirect = await runOk('getfattr', ['--absolute-names', '--only-values', '-n', 'trusted.overlay.redirect', path.join(upper, 'opt', 'renamed')]);
  t.match(redirect, /^(\/opt\/)?app$/, 'the renamed dir carries a redirect (absolute, or relative within /opt)');

  // a capability set on a file of the stopped container's upper: commit exports it (Diff)
  await setCap(path.join(upper, 'bin', 'capped2'));
  const committed = `${name}:committed`;
  await d.dockerOk(['commit', `${name}-c1`, committed]);
  t.same(capsIn(home, 'bin/capped2').filter((c) => c === CAP_HEX).length, 2, 'commit: the capability in the container and the committed layer');
  const check = 'cat /etc/motd /newdir/f; test -e /etc/removeme || echo removeme gone; test -e /srv/tree || echo tree gone; ' +
    'cat /bin/busybox | md5sum; ls /opt; cat /opt/renamed/README /opt/renamed/conf/*';
  const expected = `changed\nx\nremoveme gone\ntree gone\n${md5(BUSYBOX)}  -\nrenamed\napp\nsetting=1\n2\n`;
  t.equal(await runIn(committed, check), expected, 'the committed image has the changes');

  const saved = path.join(base, 'saved.tar');
  await d.dockerOk(['save', '-o', saved, committed]);
  await d.dockerOk(['rm', `${name}-c1`]);
  await d.dockerOk(['rmi', committed, img]);
  t.same(fs.readdirSync(home).filter((n) => !n.startsWith('.')), [], 'rmi leaves no layer dirs');
  await d.dockerOk(['load', '-i', saved]);
  t.same([capsIn(home, 'bin/capped'), capsIn(home, 'bin/capped2')], [[CAP_HEX], [CAP_HEX]], 'save | load: both capabilities exact');
  t.equal(await runIn(committed, check), expected, 'the loaded image runs with the same content');
  t.equal(await runIn(committed, meta), metaWanted, 'and the same hard link, modes and device');

  // a running container's rootfs is a stratafs mount served by the plugin process
  const cid = (await d.dockerOk(['run', '-d', '--network', 'none', committed, '/bin/sh', '-c', 'sleep 300'])).trim();
  const mounts = [...(await mountTable()).entries()].filter(([m]) => m.startsWith(`${home}/`));
  t.ok(mounts.some(([, type]) => type === 'fuse.stratafs'), 'the running container is on a stratafs mount');
  await d.dockerOk(['rm', '-f', cid]);
  await d.dockerOk(['rmi', committed]);
  const left = [...(await mountTable()).keys()].filter((m) => m.startsWith(`${home}/`));
  t.same(left, [], 'no mounts left');
  t.same(fs.readdirSync(home).filter((n) => !n.startsWith('.')), [], 'no layer dirs left');
  t.equal(plugin.exitCode, null, `plugin still running (${pluginErr.trim().split('\n').pop()})`);
});
