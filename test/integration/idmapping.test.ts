// uidmapping=/gidmapping= as fuse-overlayfs reads them (DISK:SHOWN:COUNT, optionally with
// containers-storage's leading ':' and several ranges): the same option strings to
// fuse-overlayfs and stratafs over the same layer show the same owners. A chown to an id
// outside the mapping fails with EINVAL and copies nothing up.
import t from 'tap';
import { chownSync, mkdirSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { mountFuseOverlayfs, mountStratafs } from '../lib/mounts';
import { run } from '../lib/proc';
import { tempDir } from '../lib/tmp';

/** on-disk owners of the lower's files */
const OWNERS: Record<string, [number, number]> = {
  root: [0, 0],
  five: [5, 7],
  high: [65535, 65535],
  second: [65536, 65537],
  host: [100005, 100007],
  far: [500000, 500000],
};

const MAPPINGS = [
  'uidmapping=0:100000:65536,gidmapping=0:100000:65536',
  'uidmapping=:0:100000:65536,gidmapping=:0:100000:65536',
  'uidmapping=:0:100000:1:1:200001:70000,gidmapping=:0:300000:10:65536:400000:5',
];

/** "name uid:gid" of every file of the lower as seen at MNT (stat run in a child). */
async function owners(mnt: string): Promise<string[]> {
  const r = await run('stat', ['-c', '%n %u:%g', ...Object.keys(OWNERS).map((n) => join(mnt, n))]);
  return r.stdout.split('\n').filter(Boolean).map((l) => l.slice(mnt.length + 1));
}

t.test('same owners through fuse-overlayfs and stratafs', async (t) => {
  const dir = await tempDir(t, 'idmap');
  const lower = join(dir, 'lower');
  mkdirSync(lower);
  for (const [name, [uid, gid]] of Object.entries(OWNERS)) {
    writeFileSync(join(lower, name), name);
    chownSync(join(lower, name), uid, gid);
  }
  let n = 0;
  for (const mapping of MAPPINGS) {
    const seen: Record<string, string[]> = {};
    for (const program of ['fuse-overlayfs', 'stratafs'] as const) {
      const d = join(dir, `${program}-${n++}`);
      const [upper, work, mnt] = ['upper', 'work', 'mnt'].map((x) => join(d, x));
      for (const x of [upper, work, mnt]) mkdirSync(x, { recursive: true });
      const spec = { lowers: [lower], upper, work, mnt, options: mapping.split(',') };
      const m = program === 'stratafs' ? await mountStratafs(spec) : await mountFuseOverlayfs(spec);
      t.teardown(() => m.unmount());
      seen[program] = await owners(mnt);
      await m.unmount();
    }
    t.same(seen.stratafs, seen['fuse-overlayfs'], `${mapping}: ${seen.stratafs.join(', ')}`);
  }
});

t.test('chown outside the mapping: EINVAL, nothing copied up', async (t) => {
  const dir = await tempDir(t, 'idmapchown');
  const [lower, upper, work, mnt] = ['lower', 'upper', 'work', 'mnt'].map((x) => join(dir, x));
  for (const x of [lower, upper, work, mnt]) mkdirSync(x);
  writeFileSync(join(lower, 'f'), 'data');
  mkdirSync(join(lower, 'd'));
  symlinkSync('f', join(lower, 'l'));
  const m = await mountStratafs({ lowers: [lower], upper, work, mnt, options: ['uidmapping=:0:100000:65536', 'gidmapping=:0:100000:65536'] });
  t.teardown(() => m.unmount());
  for (const [what, args] of [['uid', ['5', 'f']], ['gid', [':5', 'f']], ['dir', ['5', 'd']], ['symlink', ['-h', '5', 'l']]] as const) {
    const r = await run('chown', [...args.slice(0, -1), join(mnt, args[args.length - 1])]);
    t.not(r.code, 0, `chown ${args.join(' ')} refused`);
    t.match(r.stderr, /Invalid argument/, `EINVAL (${what}): ${r.stderr.trim()}`);
  }
  const ok = await run('chown', ['100005:100005', join(mnt, 'f')]);
  t.equal(ok.code, 0, 'an id inside the mapping is accepted');
  await m.unmount();
  t.same(readdirSync(upper), ['f'], 'only the successful chown copied its file up');
});
