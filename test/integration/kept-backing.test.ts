/**
 * A lower file opened, closed and opened again through a real mount (FUSE passthrough,
 * root): its backing id is kept after the last RELEASE, so the second open makes no
 * BACKING_OPEN; a write through the mount copies the file up, and the next read sees the
 * new data (not the kept lower file); once the mount ends, the serving process holds no
 * fd in its layers. The mount is served by this process (MountServer), every
 * access is a child process. Run with passthrough=auto and =off: without passthrough the
 * backing-id counts are a skipped subtest; the reads, the copy-up and the fds after
 * unmount are checked either way.
 */
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { MountServer, type ServedMount } from '../../src/server/mount-server';
import { servedSpec } from '../lib/mount-spec';
import { tempDir } from '../lib/tmp';
import { runOk } from '../lib/proc';

const sh = (cmd: string): Promise<string> => runOk('/bin/sh', ['-c', cmd], { timeoutMs: 20_000 });
const fdLinks = (): string[] => fs.readdirSync('/proc/self/fd').map((n) => {
  try {
    return fs.readlinkSync(`/proc/self/fd/${n}`);
  } catch {
    return '';
  }
});

/** until the RELEASEs of the closed files have been served (they come after close returns) */
async function released(m: ServedMount): Promise<void> {
  for (let i = 0; i < 500 && m.backingStats().handles > 0; i++) await new Promise((r) => setTimeout(r, 10));
}

for (const mode of ['auto', 'off'] as const) t.test(`passthrough=${mode}: a lower file opened again reuses its backing id; copy-up and unmount drop it`, { skip: process.getuid?.() !== 0 && 'needs root' }, async (t) => {
  const base = await tempDir(t, 'kept-backing');
  const lower = path.join(base, 'lower');
  fs.mkdirSync(path.join(lower, 'etc'), { recursive: true });
  fs.writeFileSync(path.join(lower, 'etc', 'motd'), 'base\n');
  fs.writeFileSync(path.join(lower, 'etc', 'other'), 'other\n');
  const spec = { ...servedSpec(base, lower), passthrough: mode };
  const server = new MountServer();
  t.teardown(() => server.closeAll());
  const m = await server.mount(spec);
  const motd = path.join(spec.mountpoint, 'etc', 'motd');

  t.equal(await sh(`cat ${motd}`), 'base\n');
  await released(m);
  const passthrough = m.backingStats().opened > 0;
  if (mode === 'off') t.notOk(passthrough, 'passthrough=off: no backing id is registered');
  await t.test('backing ids: kept after the last release, one per file', { skip: !passthrough && 'no passthrough on this kernel or mount' }, async (t) => {
    t.equal(m.backingStats().opened, 1, 'the first open registers the file');
    t.equal(m.backingStats().kept, 1, 'its backing id is kept after the last release');
    for (let i = 0; i < 3; i++) {
      t.equal(await sh(`cat ${motd}`), 'base\n', 'read again');
      await released(m);
    }
    t.equal(m.backingStats().opened, 1, 'three more opens of the file: no BACKING_OPEN (failed before: 4)');
  });

  t.equal(await sh(`cat ${path.join(spec.mountpoint, 'etc', 'other')}`), 'other\n');
  await released(m);
  if (passthrough) t.equal(m.backingStats().opened, 2, 'another file gets its own');

  await sh(`echo new >> ${motd}`);
  await released(m);
  t.equal(await sh(`cat ${motd}`), 'base\nnew\n', 'after the copy-up a read sees the upper copy, not the kept lower file');
  await released(m);
  t.equal(fs.readFileSync(path.join(spec.upperdir!, 'etc', 'motd'), 'utf8'), 'base\nnew\n');
  t.equal(await sh(`cat ${motd}`), 'base\nnew\n', 'and again');

  // (a lower read through its detached clone shows as /etc/..., the clone's root being /)
  const inLayers = (): string[] => fdLinks().filter((l) => /\/etc\/(motd|other)( \(deleted\))?$/.test(l));
  if (passthrough) t.ok(inLayers().some((l) => l.endsWith('/etc/other')), 'a kept fd of a lower file while mounted');
  await server.unmount(spec.mountpoint);
  await m.ended;
  t.same(inLayers(), [], 'once the mount ended no fd of the serving process is in its layers');
});
