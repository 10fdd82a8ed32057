// chroot + dpkg/apt in a Debian bookworm minbase rootfs (debootstrap, cached per machine,
// see test/lib/rootfs.ts) split into three lowers, with /dev and /proc bound in as a
// runtime would. A tiny package built here with dpkg-deb (no network) is installed, run,
// removed and purged; offline apt commands read the package state. Kernel overlayfs over
// the same lowers is the oracle: same output, same merged tree, same upper layer.
import t, { type Test } from 'tap';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { agentSnapshot, type Snapshot } from '../../lib/agent';
import { HOST_PATH, hostMount } from '../../lib/containers';
import type { TargetName } from '../../lib/mounts';
import { run, runOk } from '../../lib/proc';
import { debootstrapLayers } from '../../lib/rootfs';
import { tempDir } from '../../lib/tmp';
import { compareSnapshots, formatDifferences } from '../../differential/compare';
import { mountLayout, targetFromEnv } from '../../differential/harness';

const TARGET_B = targetFromEnv();
const PKG = 'stratafs-hello';

const STEPS = [
  `dpkg -i /tmp/${PKG}.deb >/dev/null`,
  PKG,
  `dpkg-query -W -f '\${Package} \${Version} \${Status}\\n' ${PKG}`,
  `cat /etc/${PKG}.conf`,
  // a lower file replaced (dpkg writes status-old and renames status over it)
  'test -s /var/lib/dpkg/status-old && echo status-old',
  `apt-cache policy ${PKG} | sed -n 2p`,
  'apt-get check -q=2 && echo apt-check-ok',
  'apt-get -s -q=2 remove dpkg 2>&1 | grep -c "^Remv" || true',
  'dpkg --configure -a && echo configured',
  `dpkg -r ${PKG} >/dev/null`,
  `test -e /usr/bin/${PKG} || echo binary-removed`,
  `test -e /etc/${PKG}.conf && echo conffile-kept`,
  `dpkg -P ${PKG} >/dev/null`,
  `test -e /etc/${PKG}.conf || echo conffile-purged`,
  `dpkg-query -W ${PKG} 2>&1 || true`,
  // delete a lower directory tree as an upgrade would
  'rm -r /usr/share/doc/dpkg && ls /usr/share/doc | grep -c .',
].join(' && ');

/** A package with a program, a data file, a conffile and a postinst that writes a file. */
async function buildDeb(dir: string): Promise<string> {
  const root = join(dir, 'pkgroot');
  await mkdir(join(root, 'DEBIAN'), { recursive: true });
  await mkdir(join(root, 'usr', 'bin'), { recursive: true });
  await mkdir(join(root, 'usr', 'share', PKG), { recursive: true });
  await mkdir(join(root, 'etc'), { recursive: true });
  await writeFile(
    join(root, 'DEBIAN', 'control'),
    `Package: ${PKG}\nVersion: 1.0-1\nArchitecture: all\nMaintainer: stratafs tests <root@localhost>\nDescription: test package\n a package installed by the stratafs tests\n`,
  );
  await writeFile(join(root, 'DEBIAN', 'conffiles'), `/etc/${PKG}.conf\n`);
  await writeFile(join(root, 'DEBIAN', 'postinst'), `#!/bin/sh\nset -e\necho "configured $1" > /var/lib/${PKG}.state\n`);
  await writeFile(join(root, 'DEBIAN', 'postrm'), `#!/bin/sh\nset -e\nrm -f /var/lib/${PKG}.state\n`);
  await writeFile(join(root, 'usr', 'bin', PKG), `#!/bin/sh\ncat /usr/share/${PKG}/greeting /var/lib/${PKG}.state\n`);
  await writeFile(join(root, 'usr', 'share', PKG, 'greeting'), 'hello from a package\n');
  await writeFile(join(root, 'etc', `${PKG}.conf`), 'setting=1\n');
  for (const f of ['DEBIAN/postinst', 'DEBIAN/postrm', `usr/bin/${PKG}`]) await chmod(join(root, f), 0o755);
  const deb = join(dir, `${PKG}.deb`);
  await runOk('dpkg-deb', ['--root-owner-group', '--build', root, deb], { timeoutMs: 60_000 });
  return deb;
}

/**
 * Files whose content holds the time of the run (logs, apt's binary caches): compared by
 * presence and type only.
 */
const TIME_STAMPED = [/^var\/log\//, /^var\/cache\/apt\/.*\.bin$/, /^var\/cache\/debconf\//];

function withoutTimeStamps(s: Snapshot): Snapshot {
  const entries: Snapshot['entries'] = {};
  for (const [path, e] of Object.entries(s.entries)) {
    entries[path] = TIME_STAMPED.some((re) => re.test(path)) && e.type === 'file' ? { type: e.type, mode: e.mode, uid: e.uid, gid: e.gid } : e;
  }
  return { ...s, entries };
}

async function chrootRun(t: Test, target: TargetName, dir: string, lowers: string[], deb: string) {
  const layout = { lowers, upper: join(dir, 'upper'), work: join(dir, 'work'), mnt: join(dir, 'mnt') };
  for (const d of [layout.upper, layout.work, layout.mnt]) await mkdir(d, { recursive: true });
  const m = await mountLayout(t, target, layout);
  // stratafs mounts nodev, so the rootfs's own device nodes cannot be opened; a runtime
  // binds the host's /dev (and mounts /proc) instead. Set up from child processes.
  const undev = await hostMount(t, join(m.mnt, 'dev'), '/dev');
  const unproc = await hostMount(t, join(m.mnt, 'proc'), { fstype: 'proc' });
  await runOk('cp', [deb, join(m.mnt, 'tmp')]);
  const r = await run('chroot', [m.mnt, '/bin/sh', '-c', STEPS], {
    timeoutMs: 300_000,
    env: { PATH: HOST_PATH, LANG: 'C', DEBIAN_FRONTEND: 'noninteractive' },
  });
  await unproc();
  await undev();
  const merged = withoutTimeStamps(await agentSnapshot(m.mnt, 'merged'));
  await m.unmount();
  const upper = withoutTimeStamps(await agentSnapshot(layout.upper, 'upper'));
  return { ...r, merged, upper };
}

t.test(`dpkg and apt in a chroot on a debootstrap rootfs: kernel overlayfs vs ${TARGET_B}`, async (t) => {
  const dir = await tempDir(t, 'dpkg');
  const lowers = await debootstrapLayers(join(dir, 'layers'));
  t.equal(lowers.length, 3, 'three lowers');
  const deb = await buildDeb(dir);

  const a = await chrootRun(t, 'kernel', join(dir, 'kernel'), lowers, deb);
  const b = await chrootRun(t, TARGET_B, join(dir, TARGET_B), lowers, deb);

  t.equal(a.code, 0, `kernel: every step succeeds ${a.stderr}`);
  t.match(a.stdout, /^hello from a package\nconfigured configure\nstratafs-hello 1\.0-1 install ok installed\nsetting=1\nstatus-old\n +Installed: 1\.0-1\napt-check-ok\n/, 'kernel: package installed and run');
  t.match(a.stdout, /configured\nbinary-removed\nconffile-kept\nconffile-purged\n/, 'kernel: removed and purged');
  t.equal(b.code, 0, `${TARGET_B}: every step succeeds ${b.stderr}`);
  t.equal(b.stdout, a.stdout, `${TARGET_B}: same output`);
  t.equal(b.stderr, a.stderr, `${TARGET_B}: same messages`);

  t.match(b.upper.entries['var/lib/dpkg/status'], { type: 'file' }, `${TARGET_B}: dpkg's status is in the upper`);
  t.same(b.upper.entries['usr/share/doc/dpkg'], { type: 'whiteout(chr 0:0)' }, `${TARGET_B}: the removed lower dir is a whiteout`);
  t.same(b.merged.leaks, [], `${TARGET_B}: no private overlay xattr visible`);
  const diffs = [...compareSnapshots('merged', a.merged, b.merged), ...compareSnapshots('upper', a.upper, b.upper)];
  if (diffs.length > 0) t.comment(formatDifferences(diffs, ['kernel', TARGET_B]));
  t.equal(diffs.length, 0, 'merged view and upper layer match kernel overlayfs');
});
