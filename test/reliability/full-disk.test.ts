/**
 * A full upper on the daemon data path (passthrough=off, what non-root mounts use): the
 * write that does not fit must fail with ENOSPC in write() (or at the latest close()),
 * every byte write() acknowledged must be in the upper file, and after a delete the
 * space is usable again. Kernel overlayfs over the same kind of upper is the reference.
 *
 * The upper and work dirs live on a 64 MiB ext4 image on a loop device of its own
 * (losetup, umount and losetup -d in teardown). The writer is a python3 child: 1 MiB
 * writes of a known pattern until the first error, up to 200 MiB.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { mountKernelOverlay } from '../lib/mounts';
import { forceUnmount, makeLayers, mountWith, py } from './lib';

const WRITER = `
import errno, json, os, sys
path, mib = sys.argv[1], int(sys.argv[2])
def chunk(i):
    return bytes([(i * 7 + 1) % 251]) * (1 << 20)
out = {'acked': 0, 'write': None, 'close': None}
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
try:
    for i in range(mib):
        b = chunk(i)
        n = os.write(fd, b)
        out['acked'] += n
        if n < len(b):
            break
except OSError as e:
    out['write'] = errno.errorcode[e.errno]
try:
    os.close(fd)
except OSError as e:
    out['close'] = errno.errorcode[e.errno]
out['size'] = os.stat(path).st_size
print(json.dumps(out))
`;

/** what the writer wrote into the first `n` bytes */
function expected(n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let off = 0, i = 0; off < n; off += 1 << 20, i++) b.fill((i * 7 + 1) % 251, off, Math.min(n, off + (1 << 20)));
  return b;
}

interface Written {
  acked: number;
  write: string | null;
  close: string | null;
  size: number;
}

function sh(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
  return r.stdout.trim();
}

/** a fresh 64 MiB ext4 on its own loop device, mounted at `dir`; undone in teardown */
function smallExt4(tt: { teardown(fn: () => unknown): void }, root: string, dir: string): void {
  const img = `${root}/upper.img`;
  fs.writeFileSync(img, '');
  fs.truncateSync(img, 64 << 20);
  sh('mkfs.ext4', ['-q', '-F', img]);
  const loop = sh('losetup', ['-f', '--show', img]);
  tt.teardown(() => {
    spawnSync('umount', [dir]);
    spawnSync('losetup', ['-d', loop]);
  });
  fs.mkdirSync(dir);
  sh('mount', [loop, dir]);
}

async function fillAndCheck(tt: tap.Test, upper: string, mnt: string, what: string): Promise<void> {
  const r = await py(WRITER, [`${mnt}/fill`, '200'], 120_000);
  tt.equal(r.status, 0, `${what}: writer ran ${r.stderr}`);
  const w = JSON.parse(r.stdout) as Written;
  tt.comment(`${what}: ${JSON.stringify(w)}`);
  tt.ok(w.write === 'ENOSPC' || w.close === 'ENOSPC', `${what}: ENOSPC at write (${w.write}) or close (${w.close})`);
  tt.ok(w.acked < 64 << 20, `${what}: not more acknowledged than the upper holds (${w.acked})`);
  tt.equal(w.size, w.acked, `${what}: the size seen is what was acknowledged`);
  // the upper itself (not the mount) holds every acknowledged byte
  const onDisk = fs.readFileSync(`${upper}/fill`);
  tt.ok(onDisk.length >= w.acked, `${what}: upper file holds ${onDisk.length} of ${w.acked} acknowledged bytes`);
  tt.ok(onDisk.subarray(0, w.acked).equals(expected(w.acked)), `${what}: acknowledged bytes are in the upper`);

  const again = await py(
    `import os, sys
os.unlink(sys.argv[1] + '/fill')
fd = os.open(sys.argv[1] + '/again', os.O_WRONLY | os.O_CREAT, 0o644)
os.write(fd, b'z' * (8 << 20))
os.fsync(fd)
os.close(fd)
print(os.stat(sys.argv[1] + '/again').st_size)`,
    [mnt],
  );
  tt.equal(again.status, 0, `${what}: after deleting, 8 MiB written and fsync'd ${again.stderr}`);
  tt.equal(again.stdout.trim(), String(8 << 20), `${what}: new file has its size`);
  tt.ok(fs.readFileSync(`${upper}/again`).equals(Buffer.alloc(8 << 20, 'z')), `${what}: and its content in the upper`);
}

t.test('full upper: stratafs daemon data path (passthrough=off)', async (tt) => {
  const l = makeLayers(tt, 'enospc');
  const disk = `${l.root}/disk`;
  smallExt4(tt, l.root, disk);
  tt.teardown(() => forceUnmount(l.mnt));
  fs.mkdirSync(`${disk}/upper`);
  fs.mkdirSync(`${disk}/work`);
  const m = await mountWith({ ...l, upper: `${disk}/upper`, work: `${disk}/work` }, {}, ',passthrough=off');
  tt.equal(m.code, 0, m.stderr);
  if (m.code !== 0) return;
  await fillAndCheck(tt, `${disk}/upper`, l.mnt, 'stratafs');
});

t.test('full upper: writeback=on reports ENOSPC at close at the latest', async (tt) => {
  // the opt-in writeback cache acknowledges writes the upper cannot take (README
  // "Decisions"); the kernel's write-back at close must still hand the error to close()
  const l = makeLayers(tt, 'enospc-wb');
  const disk = `${l.root}/disk`;
  smallExt4(tt, l.root, disk);
  tt.teardown(() => forceUnmount(l.mnt));
  fs.mkdirSync(`${disk}/upper`);
  fs.mkdirSync(`${disk}/work`);
  const m = await mountWith({ ...l, upper: `${disk}/upper`, work: `${disk}/work` }, {}, ',passthrough=off,writeback=on');
  tt.equal(m.code, 0, m.stderr);
  if (m.code !== 0) return;
  const r = await py(WRITER, [`${l.mnt}/fill`, '200'], 120_000);
  tt.equal(r.status, 0, `writer ran ${r.stderr}`);
  const w = JSON.parse(r.stdout) as Written;
  tt.comment(`writeback=on: ${JSON.stringify(w)}`);
  tt.ok(w.write === 'ENOSPC' || w.close === 'ENOSPC', `ENOSPC at write (${w.write}) or close (${w.close})`);
});

t.test('full upper: kernel overlayfs (reference)', async (tt) => {
  const l = makeLayers(tt, 'enospc-kernel');
  const disk = `${l.root}/disk`;
  smallExt4(tt, l.root, disk);
  fs.mkdirSync(`${disk}/upper`);
  fs.mkdirSync(`${disk}/work`);
  const m = await mountKernelOverlay({ lowers: [l.lower], upper: `${disk}/upper`, work: `${disk}/work`, mnt: l.mnt });
  tt.teardown(() => m.unmount());
  await fillAndCheck(tt, `${disk}/upper`, l.mnt, 'kernel overlayfs');
});
