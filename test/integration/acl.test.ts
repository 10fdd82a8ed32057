/**
 * POSIX ACLs through the mount, compared with kernel overlayfs on identical layers:
 * default ACLs inherited by new files and directories (the umask then does not apply),
 * access granted by an ACL entry alone, and chmod keeping the ACL mask in step.
 * Every command runs in a child shell; the mounts are undone in teardown.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdir, writeFile, chmod } from 'node:fs/promises';
import { join } from 'node:path';
import { mountKernelOverlay, mountStratafs, type Mounted } from '../lib/mounts';
import { tempDir } from '../lib/tmp';

function sh(cmd: string): string {
  const r = spawnSync('/bin/sh', ['-c', cmd], { encoding: 'utf8' });
  return `${r.stdout}${r.stderr}`.replaceAll(/\/tmp\/stratafs-acl-[^/]+\/[ks]\//g, '');
}

/** What one mount shows for the script; paths relative to the mount. */
function observe(m: string): string {
  return [
    `(umask 022; touch ${m}/dacl/new; mkdir ${m}/dacl/sub; umask 077; touch ${m}/plain)`,
    `getfacl -c -p ${m}/dacl/new ${m}/dacl/sub ${m}/plain`,
    `stat -c '%A %n' ${m}/dacl/new ${m}/dacl/sub ${m}/plain`,
    `setpriv --reuid=nobody --regid=nogroup --clear-groups cat ${m}/f`,
    `chmod 640 ${m}/f && getfacl -c -p ${m}/f`,
    `setpriv --reuid=nobody --regid=nogroup --clear-groups cat ${m}/f`,
  ].map((c) => sh(c).replaceAll(m, 'MNT')).join('--\n');
}

t.test('ACLs behave as on kernel overlayfs', async (t) => {
  const root = await tempDir(t, 'acl');
  const mounts: Mounted[] = [];
  t.teardown(async () => {
    for (const m of mounts) await m.unmount();
  });
  const seen: Record<string, string> = {};
  for (const target of ['k', 's'] as const) {
    const base = join(root, target);
    const [lower, upper, work, mnt] = ['lower', 'upper', 'work', 'mnt'].map((d) => join(base, d));
    for (const d of [lower, upper, work, mnt]) await mkdir(d, { recursive: true });
    await mkdir(join(lower, 'dacl'));
    sh(`setfacl -m d:u:1234:rwx ${lower}/dacl`);
    await writeFile(join(lower, 'f'), 'secret\n');
    await chmod(join(lower, 'f'), 0o600);
    sh(`setfacl -m u:nobody:r ${lower}/f`);
    await chmod(root, 0o755);
    await chmod(base, 0o755);
    const spec = { lowers: [lower], upper, work, mnt };
    const m = target === 'k'
      ? await mountKernelOverlay({ ...spec, options: ['redirect_dir=on', 'index=off'] })
      : await mountStratafs(spec);
    mounts.push(m);
    seen[target] = observe(mnt);
  }
  t.match(seen.k, /user:1234:rwx/, 'the oracle inherited the default ACL (the test is meaningful)');
  t.match(seen.k, /secret/, 'the oracle grants access through the ACL entry');
  t.equal(seen.s, seen.k, 'stratafs shows the same modes, ACLs and access');
});
