// Which layouts a mount server must refuse so that it never reads its own mounts
// (src/server/own-mounts.ts checkNotCrossed): mountpoints inside the directories another
// mount (or the same one) reads by path.
import t from 'tap';
import { checkNotCrossed, type MountDirs } from '../../src/server/own-mounts';

const A: MountDirs = { mountpoint: '/c/a/mnt', dirs: [['lowerdir', '/layers/L'], ['upperdir', '/c/a/upper'], ['workdir', '/c/a/work']] };

t.test('lowers read through a clone: only the upper and work dirs are off limits', async (t) => {
  const B: MountDirs = { mountpoint: '/layers/L/sub', dirs: [['lowerdir', '/layers/B']] };
  t.doesNotThrow(() => checkNotCrossed(B, [A], true), 'a mountpoint inside another mount\'s lower');
  t.doesNotThrow(() => checkNotCrossed({ mountpoint: '/layers/L/sub', dirs: [['lowerdir', '/layers/L']] }, [], true),
    'a mountpoint inside its own lower');
  t.doesNotThrow(() => checkNotCrossed(A, [B], true), 'a lower holding a served mountpoint');
  t.throws(() => checkNotCrossed({ mountpoint: '/c/a/upper/x', dirs: [['lowerdir', '/layers/B']] }, [A], true),
    { code: 'STRATAFS_ERR_MOUNTPOINT', message: /^mountpoint \/c\/a\/upper\/x lies inside the \/c\/a\/mnt mount's upperdir \/c\/a\/upper: / });
  t.throws(() => checkNotCrossed({ mountpoint: '/u/in', dirs: [['lowerdir', '/l'], ['upperdir', '/u'], ['workdir', '/w']] }, [], true),
    { message: /inside its own upperdir \/u/ });
  t.throws(() => checkNotCrossed({ mountpoint: '/m', dirs: [['lowerdir', '/l'], ['upperdir', '/u'], ['workdir', '/w']] }, [{ mountpoint: '/w/x', dirs: [] }], true),
    { message: /^workdir \/w holds \/w\/x, a mount this stratafs process serves/ });
});

t.test('without clones (no CAP_SYS_ADMIN): lowers are off limits too, with the reason', async (t) => {
  const B: MountDirs = { mountpoint: '/layers/L/sub', dirs: [['lowerdir', '/layers/B']] };
  t.throws(() => checkNotCrossed(B, [A], false), { message: /lies inside the \/c\/a\/mnt mount's lowerdir \/layers\/L: .*open_tree/ });
  t.throws(() => checkNotCrossed({ mountpoint: '/layers/L/sub', dirs: [['lowerdir', '/layers/L']] }, [], false),
    { message: /inside its own lowerdir \/layers\/L/ });
  t.throws(() => checkNotCrossed(A, [B], false), { message: /^lowerdir \/layers\/L holds \/layers\/L\/sub/ });
  t.doesNotThrow(() => checkNotCrossed({ mountpoint: '/layers/Lx', dirs: [['lowerdir', '/layers/B']] }, [A], false),
    'a sibling whose name starts the same is not inside');
  t.doesNotThrow(() => checkNotCrossed({ mountpoint: '/elsewhere', dirs: [['lowerdir', '/layers/L']] }, [A], false),
    'two mounts over the same lower');
});
