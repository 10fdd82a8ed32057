// A busybox root filesystem split over two lower layers, mounted with kernel overlayfs
// and with stratafs (STRATAFS_DIFF_TARGET=kernel: kernel twice), and used through
// chroot: a shell writes a file and deletes a lower file. Both targets must give the same
// output, the same merged tree and the same upper layer (tmp/x as a file, etc/issue as a
// whiteout).
import t, { type Test } from 'tap';
import { chmod, copyFile, mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { agentSnapshot } from '../lib/agent';
import type { TargetName } from '../lib/mounts';
import { run, runOk } from '../lib/proc';
import { tempDir } from '../lib/tmp';
import { compareSnapshots, formatDifferences } from '../differential/compare';
import { mountLayout, targetFromEnv, type Layout } from '../differential/harness';

const BUSYBOX = '/bin/busybox';
const SCRIPT = 'echo ok > /tmp/x; rm /etc/issue; ls /';
const TARGET_B = targetFromEnv();

/** lower "bin": busybox and one relative symlink per applet; lower "etc": etc/ and tmp/. */
async function busyboxLayers(dir: string): Promise<Layout> {
  const bin = join(dir, 'layers', 'bin');
  const etc = join(dir, 'layers', 'etc');
  await mkdir(join(bin, 'bin'), { recursive: true });
  await copyFile(BUSYBOX, join(bin, 'bin', 'busybox'));
  await chmod(join(bin, 'bin', 'busybox'), 0o755);
  // Like `busybox --install -s`, but with relative links so they resolve inside the chroot.
  const applets = (await runOk(BUSYBOX, ['--list'])).split('\n').filter((a) => a && a !== 'busybox');
  for (const applet of applets) await symlink('busybox', join(bin, 'bin', applet));

  await mkdir(join(etc, 'etc'), { recursive: true });
  await writeFile(join(etc, 'etc', 'issue'), 'busybox test rootfs \\n \\l\n');
  await writeFile(join(etc, 'etc', 'passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
  await mkdir(join(etc, 'tmp'));
  await chmod(join(etc, 'tmp'), 0o1777);

  const layout: Layout = { lowers: [etc, bin], upper: join(dir, 'upper'), work: join(dir, 'work'), mnt: join(dir, 'mnt') };
  for (const d of [layout.upper, layout.work, layout.mnt]) await mkdir(d as string);
  return layout;
}

async function chrootRun(t: Test, target: TargetName, dir: string) {
  const layout = await busyboxLayers(dir);
  const m = await mountLayout(t, target, layout);
  const r = await run('chroot', [m.mnt, '/bin/sh', '-c', SCRIPT], { timeoutMs: 60_000, env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' } });
  const merged = await agentSnapshot(m.mnt, 'merged');
  await m.unmount();
  const upper = await agentSnapshot(layout.upper as string, 'upper');
  return { code: r.code, stdout: r.stdout, stderr: r.stderr, merged, upper };
}

t.test(`chroot into a busybox rootfs: kernel overlayfs vs ${TARGET_B}`, async (t) => {
  const dir = await tempDir(t, 'chroot');
  const a = await chrootRun(t, 'kernel', join(dir, 'a'));
  const b = await chrootRun(t, TARGET_B, join(dir, 'b'));

  // The oracle does what the script says.
  t.equal(a.code, 0, `kernel: exit 0 ${a.stderr}`);
  t.equal(a.stdout, 'bin\netc\ntmp\n', 'kernel: ls / lists the merged root');
  t.match(a.upper.entries['tmp/x'], { type: 'file', size: 3 }, 'kernel: upper has tmp/x');
  t.same(a.upper.entries['etc/issue'], { type: 'whiteout(chr 0:0)' }, 'kernel: etc/issue is a whiteout');

  // The second target does the same.
  t.equal(b.code, a.code, `${TARGET_B}: same exit code ${b.stderr}`);
  t.equal(b.stdout, a.stdout, `${TARGET_B}: same output`);
  t.same(b.merged.leaks, [], `${TARGET_B}: no private overlay xattr visible`);
  const diffs = [...compareSnapshots('merged', a.merged, b.merged), ...compareSnapshots('upper', a.upper, b.upper)];
  if (diffs.length > 0) t.comment(formatDifferences(diffs, ['kernel', TARGET_B]));
  t.equal(diffs.length, 0, 'merged view and upper layer match');
});
